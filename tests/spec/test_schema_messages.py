"""Schema errors become precise, readable problems."""

from __future__ import annotations

from ml_connector.spec import parse_yaml, validate_document


def problems(kind: str, text: str) -> list[str]:
    data, source = parse_yaml(text, "f.yaml")
    return [str(p) for p in validate_document(kind, data, source, "f.yaml")]  # type: ignore[arg-type]


CONNECTOR = """\
connector: demo
base_url: https://example.com
auth:
  key: {type: api_key, header: x-key, value: "{{ secrets.key }}"}
entities:
  thing: {key: id}
"""


def test_valid_minimal_connector() -> None:
    assert problems("connector", CONNECTOR) == []


def test_enum_with_suggestion() -> None:
    text = CONNECTOR + "responses:\n  - when: {status: 429}\n    do: rate_limit\n"
    assert problems("connector", text) == [
        "f.yaml:9: responses[0].do: 'rate_limit' is not one of: ok, retry, reauth, rate_limited, record_error, "
        "request_error, fatal, quota_exhausted, skip_flow (did you mean 'rate_limited'?)"
    ]


def test_exactly_one_of() -> None:
    text = CONNECTOR.replace("header: x-key,", "header: x-key, query: key,")
    assert problems("connector", text) == [
        "f.yaml:4: auth.key.query: give only one of header or query (found header, query)"
    ]
    text = CONNECTOR.replace("header: x-key,", "")
    assert problems("connector", text) == ["f.yaml:4: auth.key: needs one of header or query"]


def test_discriminated_unions_report_the_branch_errors() -> None:
    text = CONNECTOR + "paginators:\n  p:\n    type: cursor\n    param: c\n    limit: {param: n, max: 0}\n"
    assert problems("connector", text) == [
        "f.yaml:8: paginators.p: missing required key 'next'",
        "f.yaml:11: paginators.p.limit.max: must be >= 1",
    ]


def test_strategy_requirements() -> None:
    text = CONNECTOR.replace(
        "thing: {key: id}",
        "thing:\n    key: id\n    write: {strategy: update_only, create: {method: POST, path: /t}}",
    )
    assert problems("connector", text) == [
        "f.yaml:8: entities.thing.write: missing required key 'update'",
        "f.yaml:8: entities.thing.write.create: 'create' is not used by update_only",
    ]


def test_mapping_child_lists_are_validated_recursively() -> None:
    text = (
        "flow: f\nfrom: {connection: a, entity: b}\nto: {connection: c, entity: d}\nkey: id\nfields:\n"
        "  lines:\n    each: items\n    fields:\n      qty: quantity\n      sub: {each: x, field: {}}\n"
    )
    assert problems("mapping", text) == [
        "f.yaml:10: fields.lines.fields.sub: missing required key 'fields'",
        "f.yaml:10: fields.lines.fields.sub.field: unknown key 'field' (did you mean 'fields'?)",
    ]


def test_workspace_secret_type_error_does_not_echo_value() -> None:
    text = "connections:\n  a:\n    connector: x\n    secrets: {pin: 482913}\n"
    (message,) = problems("workspace", text)
    assert message == "f.yaml:4: connections.a.secrets.pin: expected string, got integer"
