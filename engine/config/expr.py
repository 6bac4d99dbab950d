"""An expression of a spec, compiled once at load by the runtime's own compile functions.

The JSON Schemas tag every expression-bearing property with `x-expression` and its kind:

* `jmespath` — a JMESPath query (selectors into responses);
* `template` — a string that is Jinja when it contains `{{` or `{%`, else a literal; on an object or list, every
  string inside it (request bodies, parameters, headers);
* `mapping` — a mapping value: Jinja when it is a template, else JMESPath over the record (non-strings are
  constants);
* `path` — a URL path template whose inserted values are percent-encoded.

The loader compiles each tagged value into an `Expr`; the validator reports what does not compile, and the
runtime evaluates the very objects the validator compiled.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from ml_connector.transform.expressions import (
    TemplateTree,
    compile_expression,
    compile_jmespath,
    compile_path,
    compile_template,
)

ExpressionKind = Literal["jmespath", "template", "mapping", "path"]
EXPRESSION_KINDS: tuple[str, ...] = get_args(ExpressionKind)


_LATER: Any = object()  # not compiled yet


@dataclass(frozen=True)
class Expr:
    """A compiled expression with its kind and source (the value as written, for messages and comparisons).

    A spec the cache knows compiled (spec/cache.py) is loaded with its expressions compiled on first use: a run
    compiles only what its flows evaluate, not every template of every connector of the workspace.
    """

    kind: ExpressionKind
    source: Any
    _compiled: Any = field(default=_LATER, repr=False, compare=False)

    @property
    def compiled(self) -> Any:
        compiled = self._compiled
        if compiled is _LATER:
            compiled = _compile(self.kind, self.source)
            object.__setattr__(self, "_compiled", compiled)
        return compiled

    def evaluate(self, context: Any) -> Any:
        """The value over `context` (for `jmespath`, the data searched)."""
        compiled = self.compiled
        if self.kind == "jmespath":
            return compiled.search(context)
        if isinstance(compiled, TemplateTree):
            return compiled.render(context)
        return compiled.evaluate(context)


def compile_expr(kind: ExpressionKind, source: Any) -> Expr:
    """Compile `source` as an expression of `kind`; raises the compiler's own error when it does not compile."""
    return Expr(kind, source, _compile(kind, source))


def compile_later(kind: ExpressionKind, source: Any) -> Expr:
    """`source` as an expression compiled on first use: only for a source known to compile (spec/cache.py)."""
    return Expr(kind, source)


def _compile(kind: ExpressionKind, source: Any) -> Any:
    if kind == "jmespath":
        return compile_jmespath(source)
    if kind == "path":
        return compile_path(source)
    if kind == "mapping":
        return compile_expression(source)
    if isinstance(source, (Mapping, list)):
        return TemplateTree(source)
    return compile_template(source)
