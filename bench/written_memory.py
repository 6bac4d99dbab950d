"""The matcher's written-record memory: a dict vs WrittenIds. `python -m bench.written_memory --items 1000000`.

Remembers N (match key, target id) pairs the way a first sync does (keys like item codes, integer ids, a few text
ids) and reports tracemalloc's retained and peak bytes per entry, and the time to write and to look all up.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

from ml_connector.http.written_ids import WrittenIds


def pairs(count: int, text_every: int) -> Iterator[tuple[str, str]]:
    """Made on the fly, as a sync makes them per record: a dict keeps each key and id, WrittenIds does not."""
    for n in range(count):
        yield f"ITEM-{n:08d}", f"p{n}" if text_every and n % text_every == 0 else str(1_000_000 + n)


def measure(name: str, make: Callable[[], Any], count: int, text_every: int) -> None:
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    started = time.perf_counter()
    store: MutableMapping[str, str] = make()
    for key, target_id in pairs(count, text_every):
        store[key] = target_id
    wrote = time.perf_counter() - started
    retained, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    started = time.perf_counter()
    assert all(store.get(key) == target_id for key, target_id in pairs(count, text_every))
    looked = time.perf_counter() - started
    n = count
    print(f"{name:10s} {n:>9,} entries: retained {(retained - base) / n:6.1f} B/entry "
          f"({(retained - base) / 2**20:6.1f} MiB), peak {(peak - base) / n:6.1f} B/entry "
          f"({(peak - base) / 2**20:6.1f} MiB); write {wrote:5.2f} s, get all {looked:5.2f} s")
    del store


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--text-every", type=int, default=1000, help="one text (non-integer) id every N; 0: none")
    args = parser.parse_args()
    measure("dict", dict, args.items, args.text_every)
    measure("WrittenIds", WrittenIds, args.items, args.text_every)


if __name__ == "__main__":
    main()
