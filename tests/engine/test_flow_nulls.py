"""Missing optional keys map to null (never a crash); a record that cannot be mapped is parked, the rest sync."""

from __future__ import annotations

import os

from ml_connector.store import State
from tests.engine.fakeapi import FakeAPI
from tests.engine.flowkit import bodies, flow_spec, run_flow


def test_a_missing_optional_key_is_null_inside_lists_and_dicts_a_template_builds() -> None:
    spec = flow_spec({
        "name": "name",
        "address": "{{ {'postal_code': address.postalCode, 'city': address.city} }}",
        "parts": "{{ [address.postalCode, address.city] }}",
        "zip": "addr.zip",
        "label": "{{ address.postalCode }} {{ address.city }}",
    }, let={"addr": "{{ {'zip': address.postalCode} }}"})
    source = FakeAPI().on("GET", "/v2/things", 200, {"data": [
        {"code": "C1", "name": "Acme", "updated": "2026-03-01T10:00:00Z", "address": {"city": "Zürich"}}]})
    target = FakeAPI().on("POST", "/v2/items", 200, {"data": {"id": 7}})

    summary = run_flow(State(":memory:"), spec, source, target)

    assert (summary.status, summary.created, summary.failed) == ("ok", 1, 0)
    assert bodies(target) == [{"name": "Acme", "address": {"postal_code": None, "city": "Zürich"},
                               "parts": [None, "Zürich"], "zip": None, "label": " Zürich"}]


def test_a_record_that_cannot_be_mapped_is_parked_with_the_field_and_the_run_goes_on() -> None:
    spec = flow_spec({"name": "name", "lines": {"each": "lines", "fields": {"qty": "qty"}}})
    source = FakeAPI().on("GET", "/v2/things", 200, {"data": [
        {"code": "BAD", "name": "broken lines", "updated": "2026-03-01T10:00:00Z", "lines": [{"qty": 1}, None]},
        {"code": "OK", "name": "fine", "updated": "2026-03-01T10:00:00Z", "lines": [{"qty": 2}]}]})
    target = FakeAPI().on("POST", "/v2/items", 200, {"data": {"id": 8}})
    state = State(":memory:")

    summary = run_flow(state, spec, source, target)

    assert (summary.status, summary.created, summary.failed) == ("ok", 1, 1)
    assert bodies(target) == [{"name": "fine", "lines": [{"qty": 2}]}]
    [parked] = state.pending.list(flow="things")
    assert (parked.source_key, parked.status) == ("BAD", "failed")
    assert parked.reason == "field lines[1]: null is not an object"
    assert state.watermarks.get("things") == "2026-03-01T10:00:00Z"  # parked with its payload: the read moves on


def test_a_key_holding_nul_is_written_once_or_parked_where_the_state_cannot_hold_it() -> None:
    """DuckDB keeps NUL in a key; PostgreSQL text cannot (its state stores U+FFFD), so a link saved there would never
    be found again under the record's own key and every run would create the record anew: such a record is parked."""
    spec = flow_spec({"name": "name"})
    source = FakeAPI().on("GET", "/v2/things", 200, {"data": [
        {"code": "A\0B", "name": "nul inside", "updated": "2026-03-01T10:00:00Z"},
        {"code": "C", "name": "plain", "updated": "2026-03-01T10:00:00Z"}]})
    target = FakeAPI().on("POST", "/v2/items", 200, {"data": {"id": 7}})
    state = State(":memory:")
    holds_nul = os.environ.get("ML_CONNECTOR_TEST_STATE") != "postgresql"

    first = run_flow(state, spec, source, target)
    again = run_flow(state, spec, source, target, full=True, run_id="r2")

    if holds_nul:
        assert (first.created, first.failed, again.created, again.unchanged) == (2, 0, 0, 2)
        assert [body["name"] for body in bodies(target)] == ["nul inside", "plain"]
    else:
        assert (first.created, first.failed, again.created, again.failed) == (1, 1, 0, 1)
        assert [body["name"] for body in bodies(target)] == ["plain"]
        [parked] = state.pending.list(flow="things")
        assert parked.reason == ("the key holds a NUL character, which this state (PostgreSQL) cannot store: fix the "
                                 "record at the source")
