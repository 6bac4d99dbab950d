"""The fingerprints of links written during a run: a set of 64-bit numbers in ~8 bytes each (issue 24, target 2).

A first sync writes every record once; kept in a Python set, their fingerprints took ~60 bytes each (55 MiB at a
million), one of the things that made the run's memory grow with the source."""

from __future__ import annotations

import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from ml_connector.store.fingerprints import Fingerprints, FingerprintSet, fingerprint


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=2**64 - 1), max_size=400),
       st.lists(st.integers(min_value=0, max_value=2**64 - 1), max_size=50), st.integers(1, 64))
def test_membership_is_a_sets(added: list[int], probes: list[int], flush_at: int) -> None:
    kept = FingerprintSet(flush_at=flush_at)
    for number in added:
        kept.add(number)
    assert all(number in kept for number in added)
    assert [number in kept for number in probes] == [number in set(added) for number in probes]
    assert len(kept) == len(set(added))


def test_a_million_fingerprints_take_about_eight_bytes_each() -> None:
    kept = FingerprintSet()
    for number in range(1_000_000):
        kept.add(fingerprint(f"ITEM-{number:08d}"))
    assert len(kept) == 1_000_000
    assert kept.nbytes() < 10 * 1_000_000
    assert sys.getsizeof(kept) < 1000  # everything it holds is in nbytes


def test_links_written_after_the_load_are_kept_as_fingerprints() -> None:
    from array import array

    loaded = Fingerprints(array("Q"), array("Q"))
    loaded.forget([f"K{i}" for i in range(10)])
    assert isinstance(loaded.touched, FingerprintSet)
    assert [loaded.may_be_linked(f"K{i}") for i in (0, 9, 10)] == [True, True, False]


def test_growing_to_a_million_never_holds_them_as_python_objects() -> None:
    """Merging the small set into the array once made a list of every number (~36 bytes each): at a million
    fingerprints a 36 MiB spike, which set the first sync's peak memory (issue 24, target 2)."""
    import tracemalloc

    kept = FingerprintSet()
    tracemalloc.start()
    try:
        for number in range(1_000_000):
            kept.add(fingerprint(f"ITEM-{number:08d}"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 24 * 2**20, f"peak {peak / 2**20:.1f} MiB"
