"""Tagged values compile as the runtime compiles them; what does not compile is located inside the value."""

from __future__ import annotations

from ml_connector.spec.expressions import compile_value


def test_errors_are_located_inside_template_trees() -> None:
    expr, errors = compile_value("template", {"a": ["ok", "{{ x | nope }}"], "b": "{{ y }"}, ("read", "params"))
    assert expr is None
    assert errors == [
        (("read", "params", "a", 1), "invalid Jinja template: no filter named 'nope'"),
        (("read", "params", "b"), "invalid Jinja template: unexpected '}'"),
    ]


def test_runtime_filters_and_statement_templates_compile() -> None:
    """The validator uses the runtime's environment (its own filters) and its rule for what is a template."""
    expr, errors = compile_value("mapping", "{% if a %}{{ a | sha256 }}{% endif %}", ("fields", "f"))
    assert errors == [] and expr is not None
    assert expr.evaluate({"a": "x"}) == "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"


def test_unknown_test_inside_a_condition_and_bad_path_template() -> None:
    assert compile_value("template", "{{ 'a' if x is nosuchtest else 'b' }}", ("message",))[1] == [
        (("message",), "invalid Jinja template: no test named 'nosuchtest'")
    ]
    assert compile_value("path", "/things/{{ id | nope }}", ("get", "path"))[1] == [
        (("get", "path"), "invalid Jinja template: no filter named 'nope'")
    ]
