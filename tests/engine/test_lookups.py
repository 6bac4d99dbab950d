"""Lookups: a miss waits for the flow it depends on; an empty reference is the record's own problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from ml_connector.store import State
from ml_connector.sync.lookups import IdMapLookups
from ml_connector.transform.examples import run_examples
from ml_connector.transform.mapping import CompiledMapping, Deferred, MappingError
from tests.engine import configs

SPEC = {"flow": "persons", "from": {"connection": "a", "entity": "contact"}, "key": "id",
        "fields": {"org_id": "{{ lookup('orgs', customer) }}"}}


@pytest.mark.parametrize("customer", [None, ""])
def test_an_empty_reference_parks_the_record_instead_of_deferring_it_forever(tmp_path: Path,
                                                                              customer: str | None) -> None:
    state = State(tmp_path / "state.duckdb")
    try:
        lookups = IdMapLookups(state.id_maps, {"orgs", "persons"})
        mapping = CompiledMapping(configs.flow(**SPEC))
        with pytest.raises(MappingError, match="lookup into 'orgs' got an empty value"):
            mapping.map({"id": 1, "customer": customer}, lookups.lookup, lookups.lookup_source)
        with pytest.raises(Deferred, match="orgs has not synced source key 'C1' yet"):
            mapping.map({"id": 1, "customer": "C1"}, lookups.lookup, lookups.lookup_source)
    finally:
        state.close()


def test_examples_follow_the_same_rule() -> None:
    spec = {**SPEC, "examples": [{"in": {"id": 1, "customer": None}, "deferred": True}]}
    [result] = run_examples(configs.flow(**spec))
    assert not result.ok and "got an empty value" in result.message
