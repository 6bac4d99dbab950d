"""Dependency graphs of flows: topological order and cycle detection (pure functions over names)."""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence


def topological_order(names: Sequence[str], depends_on: Mapping[str, Sequence[str]]) -> list[str]:
    """`names` ordered so every flow comes after the flows it depends on; ties keep the order of `names`.

    Dependencies outside `names` are ignored. Raises ValueError naming a cycle if there is one.
    """
    rank = {name: index for index, name in enumerate(names)}
    waiting = {name: {d for d in depends_on.get(name, ()) if d in rank and d != name} for name in names}
    dependents: dict[str, list[str]] = {name: [] for name in names}
    for name, deps in waiting.items():
        for dep in deps:
            dependents[dep].append(name)
    ready = [(rank[name], name) for name, deps in waiting.items() if not deps]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        _, name = heapq.heappop(ready)
        order.append(name)
        for dependent in dependents[name]:
            waiting[dependent].discard(name)
            if not waiting[dependent]:
                heapq.heappush(ready, (rank[dependent], dependent))
    if len(order) < len(names):
        cycles = find_cycles(names, depends_on)
        raise ValueError("dependency cycle: " + " -> ".join(cycles[0]) if cycles else "dependency cycle")
    return order


def find_cycles(names: Sequence[str], depends_on: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """One cycle per strongly connected group, as `[a, b, a]`, starting at its member listed first."""
    rank = {name: index for index, name in enumerate(names)}
    edges = {name: [d for d in depends_on.get(name, ()) if d in rank] for name in names}
    cycles = []
    for group in _strongly_connected(names, edges):
        first = min(group, key=rank.__getitem__)
        if len(group) > 1 or first in edges[first]:
            cycles.append(_cycle_through(first, group, edges))
    return sorted(cycles, key=lambda cycle: rank[cycle[0]])


def _strongly_connected(names: Sequence[str], edges: Mapping[str, list[str]]) -> list[set[str]]:
    """Tarjan's algorithm, iterative (flow graphs are small, but recursion limits are not worth the risk)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []
    for root in names:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, child = work.pop()
            if child == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            if child < len(edges[node]):
                work.append((node, child + 1))
                target = edges[node][child]
                if target not in index:
                    work.append((target, 0))
                elif target in on_stack:
                    low[node] = min(low[node], index[target])
                continue
            if low[node] == index[node]:
                group = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.add(member)
                    if member == node:
                        break
                groups.append(group)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return groups


def _cycle_through(start: str, group: set[str], edges: Mapping[str, list[str]]) -> list[str]:
    """A shortest path start -> ... -> start inside `group` (breadth first, edges in listed order)."""
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in edges[node]:
                if target not in group:
                    continue
                if target == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if target not in previous:
                    previous[target] = node
                    following.append(target)
        frontier = following
    return [start, start]
