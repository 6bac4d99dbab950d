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


@dataclass(frozen=True)
class Expr:
    """A compiled expression with its kind and source (the value as written, for messages and comparisons)."""

    kind: ExpressionKind
    source: Any
    compiled: Any = field(repr=False, compare=False)

    def evaluate(self, context: Any) -> Any:
        """The value over `context` (for `jmespath`, the data searched)."""
        if self.kind == "jmespath":
            return self.compiled.search(context)
        if isinstance(self.compiled, TemplateTree):
            return self.compiled.render(context)
        return self.compiled.evaluate(context)


def compile_expr(kind: ExpressionKind, source: Any) -> Expr:
    """Compile `source` as an expression of `kind`; raises the compiler's own error when it does not compile."""
    compiled: Any
    if kind == "jmespath":
        compiled = compile_jmespath(source)
    elif kind == "path":
        compiled = compile_path(source)
    elif kind == "mapping":
        compiled = compile_expression(source)
    elif isinstance(source, (Mapping, list)):
        compiled = TemplateTree(source)
    else:
        compiled = compile_template(source)
    return Expr(kind, source, compiled)
