"""The fingerprints of links written during a run: a set of 64-bit numbers in ~8 bytes each (issue 24, target 2).

A first sync writes every record once; kept in a Python set, their fingerprints took ~60 bytes each (55 MiB at a
million), one of the things that made the run's memory grow with the source."""

from __future__ import annotations

import statistics
import sys
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from ml_connector.store.fingerprints import GUIDE_KEYS, Fingerprints, FingerprintSet, digest_fingerprint, fingerprint


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
    loaded = Fingerprints.of([])
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


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([f"K{i}" for i in range(40)]), st.sampled_from(["h1", "h2", "h3"])),
                max_size=60),
       st.lists(st.text(max_size=4), max_size=10))
def test_fingerprints_built_from_rows_in_any_order_answer_like_the_rows(
        rows: list[tuple[str, str]], probes: list[str]) -> None:
    """The load takes the rows as the database streams them (unsorted: a sorted scan held the whole result), so the
    structure sorts them itself; a key loaded twice stands for a collision of two keys: ask for it."""
    loaded = Fingerprints.of([(fingerprint(key), digest_fingerprint(digest)) for key, digest in rows])
    counts = Counter(key for key, _ in rows)
    stored = dict(rows)
    for key in [*counts, *probes]:
        assert loaded.may_be_linked(key) == (key in counts)
        for digest in ("h1", "h2", "h3"):
            assert loaded.same(key, digest) == (counts[key] == 1 and stored[key] == digest)
    assert list(loaded.keys) == sorted(fingerprint(key) for key, _ in rows)


def test_fingerprints_take_about_sixteen_bytes_a_link() -> None:
    """Kept in buckets by their top byte: a lookup bisects one bucket, and the load never needs the whole result
    sorted in one piece (in the database or here)."""
    loaded = Fingerprints.of((fingerprint(f"ITEM-{i:07d}"), 1) for i in range(200_000))
    assert 16 * 200_000 <= loaded.nbytes() < 18.5 * 200_000


def test_a_lookup_bisects_a_few_keys_whatever_the_number_of_links() -> None:
    """A bucket of thousands (a million links: ~3,900 a bucket) is bisected from a guide's narrow window, so a lookup
    costs about the same at 10k or 1M links (issue 24, target 5: 1.26x before)."""
    for links in (1_000, 10_000, 300_000):
        loaded = Fingerprints.of((fingerprint(f"ITEM-{i:07d}"), 1) for i in range(links))
        widths = [hi - lo for _, lo, hi in (loaded._window(fingerprint(f"ITEM-{i:07d}")) for i in range(0, links, 7))]
        assert max(widths) <= 4 * GUIDE_KEYS, links
        assert statistics.mean(widths) <= 2 * GUIDE_KEYS, links


def test_a_large_map_answers_for_every_key_at_both_ends_of_every_window() -> None:
    rows = [(f"ITEM-{i:07d}", f"h{i % 3}") for i in range(60_000)]
    loaded = Fingerprints.of((fingerprint(key), digest_fingerprint(digest)) for key, digest in rows)
    for key, digest in rows:
        assert loaded.same(key, digest) and not loaded.same(key, "other")
    assert not any(loaded.may_be_linked(f"ITEM-{i:07d}") for i in range(60_000, 80_000))
    loaded.forget([key for key, _ in rows[::2]])
    assert [loaded.same(key, digest) for key, digest in rows[:6]] == [False, True] * 3
