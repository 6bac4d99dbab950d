"""Bounds on the work of one template evaluation, so that neither a spec nor a record can hang a run or exhaust memory.

The sandbox keeps templates away from Python; these bounds keep them from spending it. Whatever can build something
big checks the size of its result *before* building it: the operators `**`, `*`, `+`, `%` and `~`, padding widths,
`replace`, `range`, `batch` and `slice`. Loops share one iteration budget per evaluation, and an output has a length
cap. Templates cannot mutate data (an immutable sandbox), so nothing grows behind the operators' backs.

The same checks run over a template's constant parts when it is compiled, so `{{ 'x' * 10**9 }}` is a spec problem
at load (and `{{ 2**(2**33) }}` is never folded by Jinja's optimizer: intercepted operators are not), while the same
work asked for by a record's data fails that record at run time.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.environment import TemplateExpression
from jinja2.exceptions import TemplateRuntimeError, TemplateSyntaxError
from jinja2.nodes import EvalContext, Impossible
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import _PassArg

_PRINTF_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")
_FORMAT_FIELD = re.compile(r"\{[^{}]*\}")
_PADDING_METHODS = ("ljust", "rjust", "center", "zfill", "expandtabs")


@dataclass(frozen=True)
class TemplateLimits:
    """What one evaluation of a template may build and run."""

    max_length: int = 1_000_000  # characters (or items) of a text or list an operation builds, and of an output
    max_int_bits: int = 4096
    max_range: int = 10_000
    max_iterations: int = 100_000  # loop iterations in one evaluation, all loops together (nested loops multiply)


class TemplateLimitError(TemplateRuntimeError):
    """A template asked for more work than its limits allow."""

    def __init__(self, message: str) -> None:
        super().__init__(f"template limit: {message}")


def _sized(value: Any) -> bool:
    return isinstance(value, (str, list, tuple))


def check_binop(limits: TemplateLimits, operator: str, left: Any, right: Any) -> None:
    """Refuse `left <operator> right` when its result would be too big, before computing it."""
    ints = isinstance(left, int) and isinstance(right, int)
    if operator == "**" and ints and right > 0 and abs(left) > 1:
        if right * (abs(left).bit_length() - 1) > limits.max_int_bits:
            raise TemplateLimitError(f"`**` would make a number of more than {limits.max_int_bits} bits")
    elif operator == "*" and ints:
        if left.bit_length() + right.bit_length() > limits.max_int_bits:
            raise TemplateLimitError(f"`*` would make a number of more than {limits.max_int_bits} bits")
    elif operator == "*" and (_sized(left) and isinstance(right, int) or _sized(right) and isinstance(left, int)):
        size, times = (len(left), right) if _sized(left) else (len(right), left)
        if size * times > limits.max_length:
            raise TemplateLimitError(f"`*` would make a text or list longer than {limits.max_length}")
    elif operator == "+" and _sized(left) and _sized(right):
        if len(left) + len(right) > limits.max_length:
            raise TemplateLimitError(f"`+` would make a text or list longer than {limits.max_length}")
    elif operator == "%" and isinstance(left, str):
        _check_printf(limits, left, "`%`")


def _check_printf(limits: TemplateLimits, text: str, what: str) -> None:
    """A printf-style format whose width or precision would pad past the limit (or is computed, `*`)."""
    for spec in _PRINTF_SPEC.finditer(text):
        for number in spec.groups():
            if number == "*" or number is not None and int(number) > limits.max_length:
                raise TemplateLimitError(f"{what} would make a text longer than {limits.max_length}")


def _check_format(limits: TemplateLimits, text: str) -> None:
    """A `str.format` field whose spec holds a width or precision past the limit."""
    for field in _FORMAT_FIELD.finditer(text):
        spec = field.group().partition(":")[2]
        if any(int(number) > limits.max_length for number in re.findall(r"\d+", spec)):
            raise TemplateLimitError(f"format() would make a text longer than {limits.max_length}")


def _check_width(limits: TemplateLimits, width: Any, what: str = "a width") -> None:
    if isinstance(width, int) and width > limits.max_length:
        raise TemplateLimitError(f"{what} of more than {limits.max_length}")


def _check_replace(limits: TemplateLimits, text: Any, old: Any, new: Any) -> None:
    """`text.replace(old, new)` (an empty `old` inserts `new` between every two characters) past the limit."""
    if isinstance(text, str) and isinstance(old, str) and isinstance(new, str) and len(new) > len(old):
        count = len(text) + 1 if old == "" else text.count(old)
        if len(text) + count * (len(new) - len(old)) > limits.max_length:
            raise TemplateLimitError(f"replace() would make a text longer than {limits.max_length}")


def check_method(limits: TemplateLimits, method: Any, args: tuple[Any, ...]) -> None:
    """Refuse a call of a text method whose result would be too big."""
    owner, name = getattr(method, "__self__", None), getattr(method, "__name__", "")
    if not isinstance(owner, str):
        return
    if name in _PADDING_METHODS and args:
        _check_width(limits, args[0])
    elif name == "replace" and len(args) >= 2:
        _check_replace(limits, owner, args[0], args[1])
    elif name in ("format", "format_map"):
        _check_format(limits, owner)


FilterCheck = Callable[[TemplateLimits, Any, tuple[Any, ...], dict[str, Any]], None]

#: Checks of the built-in filters that can build something much bigger than their input.
FILTER_CHECKS: dict[str, FilterCheck] = {
    "center": lambda limits, value, args, kwargs: _check_width(limits, (*args, kwargs.get("width"))[0]),
    "indent": lambda limits, value, args, kwargs: _check_width(limits, (*args, kwargs.get("width"))[0]),
    "format": lambda limits, value, args, kwargs: _check_printf(limits, str(value), "the format filter"),
    "replace": lambda limits, value, args, kwargs: _check_replace(limits, value, *(*args, None, None)[:2]),
    "batch": lambda limits, value, args, kwargs: _check_width(limits, (*args, None)[0], "a batch"),
    "slice": lambda limits, value, args, kwargs: _check_width(limits, (*args, None)[0], "slices"),
}


def _bounded_filter(limits: TemplateLimits, original: Callable[..., Any], check: FilterCheck) -> Callable[..., Any]:
    """`original` preceded by its check (keeping how Jinja passes it a context, if it asks for one)."""
    passes_context = _PassArg.from_obj(original) is not None

    @functools.wraps(original)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        value, *rest = args[1:] if passes_context else args
        check(limits, value, tuple(rest), kwargs)
        return original(*args, **kwargs)

    return bounded


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """An immutable sandbox whose operators, calls, loops and output stay within `limits`."""

    intercepted_binops = frozenset({"**", "*", "+", "%"})
    limits = TemplateLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._iterations: WeakKeyDictionary[Context, int] = WeakKeyDictionary()
        self.globals["range"] = self.bounded_range
        for name, check in FILTER_CHECKS.items():
            self.filters[name] = _bounded_filter(self.limits, self.filters[name], check)

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        with _too_deep_is_a_syntax_error():
            return super()._parse(source, name, filename)

    def _generate(self, source: nodes.Template, name: str | None, filename: str | None,
                  defer_init: bool = False) -> str:
        with _too_deep_is_a_syntax_error():
            return super()._generate(source, name, filename, defer_init)

    def compile_expression(self, source: str, undefined_to_none: bool = True) -> TemplateExpression:
        with _too_deep_is_a_syntax_error():
            return super().compile_expression(source, undefined_to_none)

    def call_binop(self, context: Context | None, operator: str, left: Any, right: Any) -> Any:
        check_binop(self.limits, operator, left, right)
        return self.binop_table[operator](left, right)

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        check_method(self.limits, obj, args)
        return super().call(context, obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """Jinja swaps `text.format` for a sandboxed one when it is looked up, not called: check it there."""
        wrapped = super().wrap_str_format(value)
        if wrapped is not None:
            check_method(self.limits, value, ())
        return wrapped

    def bounded_range(self, *args: int) -> range:
        """`range` with at most `max_range` numbers."""
        numbers = range(*args)
        try:
            too_many = len(numbers) > self.limits.max_range
        except OverflowError:  # longer than Python can count
            too_many = True
        if too_many:
            raise TemplateLimitError(f"range() of more than {self.limits.max_range} numbers")
        return numbers

    def count_loop(self, context: Context, iterable: Iterable[Any]) -> Iterator[Any]:
        """`iterable`, each item charged to the loop budget of this evaluation (its Jinja context)."""
        for item in iterable:
            spent = self._iterations.get(context, 0) + 1
            if spent > self.limits.max_iterations:
                raise TemplateLimitError(f"loops would run more than {self.limits.max_iterations} times")
            self._iterations[context] = spent
            yield item

    def bounded_text(self, pieces: Iterable[str], what: str) -> str:
        """The pieces joined, refused as soon as they pass `max_length` (`what` names them in the error)."""
        joined: list[str] = []
        length = 0
        for piece in pieces:
            length += len(piece)
            if length > self.limits.max_length:
                raise TemplateLimitError(f"{what} longer than {self.limits.max_length} characters")
            joined.append(piece)
        return "".join(joined)

    def bounded_join(self, separator: str, texts: list[str]) -> str:
        """`separator.join(texts)`, refused when it would be longer than `max_length`."""
        if sum(map(len, texts)) + len(separator) * max(len(texts) - 1, 0) > self.limits.max_length:
            raise TemplateLimitError(f"join() would make a text longer than {self.limits.max_length}")
        return separator.join(texts)

    def concat(self, pieces: Iterable[str]) -> str:
        """A template's output (and that of a block or macro), capped."""
        return self.bounded_text(pieces, "the output would be")


@contextmanager
def _too_deep_is_a_syntax_error() -> Iterator[None]:
    """Jinja parses and compiles recursively: a template nested past Python's stack is a syntax problem."""
    try:
        yield
    except RecursionError:
        raise TemplateSyntaxError("the template is nested too deeply", 1) from None


class BoundedCodeGenerator(CodeGenerator):
    """Checks a template's constants when it is compiled, and makes its loops count their iterations."""

    environment: BoundedSandbox

    def visit_Template(self, node: nodes.Template, frame: Frame | None = None) -> None:
        check_constants(self.environment, node)
        for loop in node.find_all(nodes.For):  # `for x in y` becomes `for x in count_loop(context, y)`
            if not _counted(loop.iter):
                counter = nodes.EnvironmentAttribute("count_loop", lineno=loop.lineno)
                loop.iter = nodes.Call(counter, [nodes.ContextReference(), loop.iter], [], None, None,
                                       lineno=loop.lineno)
        super().visit_Template(node, frame)


def _counted(iterable: nodes.Node) -> bool:
    return (isinstance(iterable, nodes.Call) and isinstance(iterable.node, nodes.EnvironmentAttribute)
            and iterable.node.name == "count_loop")


def check_constants(env: BoundedSandbox, template: nodes.Template) -> None:
    """Run the bounds over the constant parts of a template; TemplateLimitError names the first one too big."""
    eval_ctx = EvalContext(env)
    for node in template.find_all((nodes.BinExpr, nodes.Concat, nodes.Call, nodes.Filter)):
        with suppress(Impossible):
            _fold(env, eval_ctx, node)
    _check_loops(env, eval_ctx, template, 1)


def _check_loops(env: BoundedSandbox, eval_ctx: EvalContext, node: nodes.Node, outer: int) -> None:
    """Nested loops over constant iterables whose iterations multiply past the budget."""
    for child in node.iter_child_nodes():
        total = outer
        if isinstance(child, nodes.For):
            with suppress(Impossible, TypeError):  # an iterable from data: the runtime budget counts it
                total = outer * len(_fold(env, eval_ctx, child.iter))
            if total > env.limits.max_iterations:
                raise TemplateLimitError(f"loops would run more than {env.limits.max_iterations} times")
        _check_loops(env, eval_ctx, child, total)


def _fold(env: BoundedSandbox, eval_ctx: EvalContext, node: nodes.Node) -> Any:
    """The value of a constant expression, computed through the bounds (Impossible when it is not constant)."""
    try:
        if isinstance(node, nodes.BinExpr):
            left, right = _fold(env, eval_ctx, node.left), _fold(env, eval_ctx, node.right)
            return env.call_binop(None, node.operator, left, right)
        if isinstance(node, nodes.Concat):
            return env.bounded_text((str(_fold(env, eval_ctx, part)) for part in node.nodes), "`~` would make a text")
        if isinstance(node, (nodes.List, nodes.Tuple)):
            items = [_fold(env, eval_ctx, item) for item in node.items]
            return items if isinstance(node, nodes.List) else tuple(items)
        if isinstance(node, nodes.Call):
            return _fold_call(env, eval_ctx, node)
        if isinstance(node, nodes.Filter) and node.node is not None and node.name in FILTER_CHECKS:
            value = _fold(env, eval_ctx, node.node)
            args = tuple(_fold(env, eval_ctx, arg) for arg in node.args)
            FILTER_CHECKS[node.name](env.limits, value, args, {})
            raise Impossible()  # checked, not run: filters run at render time
        if isinstance(node, (nodes.Filter, nodes.Call)):
            raise Impossible()
        if not isinstance(node, nodes.Expr):
            raise Impossible()
        return node.as_const(eval_ctx)
    except (Impossible, TemplateLimitError):
        raise
    except Exception as exc:  # a constant that fails otherwise (`'a' ** 2`) is a run-time error, not a bound
        raise Impossible() from exc


def _fold_call(env: BoundedSandbox, eval_ctx: EvalContext, call: nodes.Call) -> Any:
    """`range(...)` of constants is computed; a text method on constants is checked, not called."""
    if call.kwargs or call.dyn_args or call.dyn_kwargs:
        raise Impossible()
    args = [_fold(env, eval_ctx, arg) for arg in call.args]
    if isinstance(call.node, nodes.Name) and call.node.name == "range":
        return env.bounded_range(*args)
    if isinstance(call.node, nodes.Getattr):
        owner = _fold(env, eval_ctx, call.node.node)
        if isinstance(owner, str):
            check_method(env.limits, getattr(owner, call.node.attr, None), tuple(args))
    raise Impossible()
