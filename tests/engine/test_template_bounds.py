"""Issue 17 case 7 (templates): template work is bounded, so a spec or a record cannot hang a run or exhaust memory.

Where the problem is in constants it is a spec problem found at load (`validate`); where it comes from data it
is an error of that record, which parks. The clock guards only catch a hang.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from jinja2.exceptions import SecurityError, TemplateError

from ml_connector.spec import SpecError
from ml_connector.transform.expressions import compile_expression, compile_template
from ml_connector.transform.mapping import CompiledMapping, MappingError
from ml_connector.transform.template_bounds import TemplateLimitError
from tests.engine import configs


@contextmanager
def fast(seconds: float = 2.0) -> Iterator[None]:
    """A guard against hangs: the block must finish within `seconds`."""
    started = time.monotonic()
    yield
    assert time.monotonic() - started < seconds


def refused_at_load(template: str) -> str:
    """The spec problem a mapping field holding `template` gets from the loader."""
    with fast(), pytest.raises(SpecError) as raised:
        configs.flow(fields={"name": template})
    (problem,) = raised.value.problems
    assert (problem.field, problem.line) == ("fields.name", 1)
    return problem.message


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ 2**(2**33) }}", "`**` would make a number of more than 4096 bits"),
        ("{{ 'x' * 10**9 }}", "`*` would make a text or list longer than 1000000"),
        ("{{ [0] * 10**9 }}", "`*` would make a text or list longer than 1000000"),
        ("{{ 7 * 2**4000 * 2**4000 }}", "`*` would make a number of more than 4096 bits"),
        ("{{ '%1000000000s' % 'x' }}", "`%` would make a text longer than 1000000"),
        ("{% for i in range(100000) %}x{% endfor %}", "range() of more than 10000 numbers"),
        ("{% for i in range(1000) %}{% for j in range(1000) %}x{% endfor %}{% endfor %}",
         "loops would run more than 100000 times"),
        ("{{ 'x' | center(10**9) }}", "a width of more than 1000000"),
        ("{{ 'x'.ljust(10**9) }}", "a width of more than 1000000"),
    ],
)
def test_unbounded_work_in_constants_is_a_spec_problem(template: str, message: str) -> None:
    assert refused_at_load(template) == f"invalid Jinja template: template limit: {message}"


@pytest.mark.parametrize(
    ("template", "record", "message"),
    [
        ("{{ n ** e }}", {"n": 2, "e": 2**33}, "`**` would make a number of more than 4096 bits"),
        ("{{ name * times }}", {"name": "x", "times": 10**9}, "`*` would make a text or list longer than 1000000"),
        ("{{ big + big }}", {"big": "x" * 600_000}, "`+` would make a text or list longer than 1000000"),
        ("{{ big ~ big }}", {"big": "x" * 600_000}, "`~` would make a text longer than 1000000 characters"),
        ("<{{ big }}{{ big }}>", {"big": "x" * 600_000}, "the output would be longer than 1000000 characters"),
        ("{% for i in range(n) %}{% for j in range(n) %}.{% endfor %}{% endfor %}", {"n": 10_000},
         "loops would run more than 100000 times"),
        ("{% for a in xs %}{% for b in xs %}{% for c in xs %}.{% endfor %}{% endfor %}{% endfor %}",
         {"xs": list(range(100))}, "loops would run more than 100000 times"),
        ("{{ range(n) | list }}", {"n": 10**9}, "range() of more than 10000 numbers"),
        ("{{ code | center(width) }}", {"code": "C", "width": 10**9}, "a width of more than 1000000"),
        ("{{ code.zfill(width) }}", {"code": "C", "width": 10**9}, "a width of more than 1000000"),
        ("{{ fmt.format(code) }}", {"code": "C", "fmt": "{:>1000000000}"},
         "format() would make a text longer than 1000000"),
        ("{{ fmt | format(code) }}", {"code": "C", "fmt": "%1000000000s"},
         "the format filter would make a text longer than 1000000"),
        ("{{ xs | join(sep) }}", {"xs": list(range(1000)), "sep": "y" * 10_000},
         "join() would make a text longer than 1000000"),
        ("{{ big | replace('', big) }}", {"big": "x" * 10_000}, "replace() would make a text longer than 1000000"),
        ("{{ big.replace('', big) }}", {"big": "x" * 10_000}, "replace() would make a text longer than 1000000"),
        ("{{ xs | batch(n, 0) | list }}", {"xs": [1], "n": 10**9}, "a batch of more than 1000000"),
        ("{{ xs | slice(n, 0) | list }}", {"xs": [1], "n": 10**9}, "slices of more than 1000000"),
    ],
)
def test_unbounded_work_from_data_parks_the_record(template: str, record: dict, message: str) -> None:
    mapping = CompiledMapping(configs.flow(fields={"name": template}))
    with fast(), pytest.raises(MappingError) as raised:
        mapping.map({"id": "R1", **record}, lambda f, k: None, lambda f, k: None)
    assert str(raised.value) == f"field name: TemplateLimitError: template limit: {message}"


def test_a_connector_template_is_bounded_too() -> None:
    body = compile_template("{% for a in xs %}{% for b in xs %}{{ a * b }}{% endfor %}{% endfor %}")
    with fast(), pytest.raises(TemplateLimitError, match="loops would run more than 100000 times"):
        body.evaluate({"xs": list(range(1000))})


def test_the_loop_budget_is_per_evaluation() -> None:
    template = compile_expression("{% for i in xs %}.{% endfor %}")
    for _ in range(5):  # 5 x 60000 iterations: each evaluation has its own budget
        assert template.evaluate({"xs": [0] * 60_000}) == "." * 60_000


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}", "invalid Jinja template: the template is nested too deeply"),
        ("(" * 5000 + "a" + ")" * 5000,
         "invalid JMESPath: the expression is nested too deeply at column 1 (token '(')"),
    ],
)
def test_an_expression_nested_past_the_stack_is_a_spec_problem(expression: str, message: str) -> None:
    assert refused_at_load(expression) == message


def test_templates_cannot_grow_data_by_mutating_it() -> None:
    with pytest.raises(SecurityError):
        compile_expression("{% set l = [1] %}{% for i in range(30) %}{{ l.extend(l) }}{% endfor %}").evaluate({})


def test_ordinary_arithmetic_and_text_still_work() -> None:
    assert compile_expression("{{ 2 ** 10 }}").evaluate({}) == 1024
    assert compile_expression("{{ price * qty }}").evaluate({"price": 2.5, "qty": 4}) == 10.0
    assert compile_expression("{{ 'ab' * 3 ~ '%05d' % n }}").evaluate({"n": 42}) == "ababab00042"
    assert compile_expression("{{ a + b }}").evaluate({"a": [1], "b": [2]}) == [1, 2]
    assert compile_expression("{{ code | center(6) }}").evaluate({"code": "C1"}) == "  C1  "
    assert compile_expression("{% for i in range(3) %}{{ loop.index }}{% endfor %}").evaluate({}) == "123"
    assert compile_expression("{{ 2 ** 0.5 }}").evaluate({}) == pytest.approx(1.41421356)


def test_a_template_error_is_still_a_template_error() -> None:
    assert issubclass(TemplateLimitError, TemplateError)
