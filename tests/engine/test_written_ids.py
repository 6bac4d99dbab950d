"""WrittenIds answers exactly as a plain dict would, across flushes, merges, overwrites and clears."""

from __future__ import annotations

import hypothesis.strategies as st
import pytest
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from ml_connector.http.written_ids import WrittenIds

KEYS = st.text(alphabet="abc", max_size=4)  # a small alphabet: the same key comes back, so overwrites happen
IDS = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1).map(str),
    st.integers(min_value=2**63, max_value=2**80).map(str),  # beyond int64: kept as text
    st.integers(min_value=-(2**80), max_value=-(2**63) - 1).map(str),
    st.sampled_from(["007", "-5", "0", "-0", "a1", "", " 1", "1 ", "+1", "1_000", "9223372036854775807",
                     "9223372036854775808", "-9223372036854775808", "-9223372036854775809"]),
    st.text(max_size=6),
)


class AgainstDict(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        # tiny runs and merge chunks: a few dozen writes cross many flushes, merges and mid-merge give-backs
        self.ids = WrittenIds(flush_at=3, merge_chunk=2)
        self.model: dict[str, str] = {}

    @rule(key=KEYS, target_id=IDS)
    def write(self, key: str, target_id: str) -> None:
        self.ids[key] = target_id
        self.model[key] = target_id

    @rule(pairs=st.lists(st.tuples(KEYS, IDS), max_size=25))
    def write_many(self, pairs: list[tuple[str, str]]) -> None:  # bursts that cross flushes and merges
        for key, target_id in pairs:
            self.write(key, target_id)

    @rule(key=KEYS)
    def get(self, key: str) -> None:
        assert self.ids.get(key) == self.model.get(key)

    @rule(key=KEYS)
    def contains(self, key: str) -> None:
        assert (key in self.ids) == (key in self.model)

    @rule(dice=st.integers(0, 9))
    def clear(self, dice: int) -> None:  # now and then, so that most runs build up many flushes between clears
        if dice == 0:
            self.ids.clear()
            self.model.clear()

    @invariant()
    def same_length(self) -> None:
        assert len(self.ids) == len(self.model)
        assert bool(self.ids) == bool(self.model)


AgainstDict.TestCase.settings = settings(max_examples=200, stateful_step_count=120, deadline=None)
TestWrittenIdsAgainstDict = AgainstDict.TestCase


def test_latest_write_wins_across_runs() -> None:
    ids = WrittenIds(flush_at=2)
    ids["k"] = "1"
    for n in range(20):  # pushes "k" into an old, merged run
        ids[f"other{n}"] = str(n)
    ids["k"] = "a1"  # now newer than the run holding "1"
    for n in range(20, 40):
        ids[f"other{n}"] = str(n)
    ids["k"] = "2"
    for n in range(40, 60):
        ids[f"other{n}"] = str(n)
    assert ids.get("k") == "2"
    assert len(ids) == 61
    assert all(ids.get(f"other{n}") == str(n) for n in range(60))


@pytest.mark.parametrize("target_id", ["007", "-5", "-0", "a1", "", "+3", "1_0", " 4", "99999999999999999999",
                                       "-9223372036854775808", "9223372036854775807"])
def test_ids_come_back_as_written(target_id: str) -> None:
    ids = WrittenIds(flush_at=1)
    ids["k"] = target_id
    ids["j"] = "1"
    assert ids.get("k") == target_id and ids.get("j") == "1"


def test_unknown_key_and_cleared_key_miss() -> None:
    ids = WrittenIds(flush_at=2)
    for n in range(10):
        ids[str(n)] = str(n)
    assert ids.get("x") is None and "x" not in ids
    assert ids and ids.get("x", "none") == "none"
    ids.clear()
    assert not ids and len(ids) == 0 and ids.get("3") is None and "3" not in ids
    ids["3"] = "a"
    assert ids.get("3") == "a" and len(ids) == 1


def test_runs_stay_few() -> None:
    """Runs of similar size are merged, so a lookup bisects O(log n) runs."""
    ids = WrittenIds(flush_at=4)
    for n in range(4096):
        ids[str(n)] = str(n)
    assert ids.run_count <= 12
