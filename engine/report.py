"""Human-readable tables for run summaries, plans, status and audit rows."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A plain fixed-width table."""
    text_rows = [[("" if cell is None else str(cell)) for cell in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in text_rows]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in text_rows]
    return "\n".join(lines)


def run_table(summary: dict[str, Any], plan: bool = False) -> str:
    """One line per flow with what happened (or, for a plan, what would happen)."""
    verbs = ("create", "update") if plan else ("created", "updated")
    headers = ["flow", "status", "read", *verbs, "unchanged", "deferred", "failed", "filtered"]
    if not plan:
        headers += ["api reads", "api writes", "rate limited", "seconds"]
    rows = []
    for flow in summary["flows"]:
        row = [flow["flow"], flow["status"], flow["read"], flow["created"], flow["updated"], flow["unchanged"],
               flow["deferred"], flow["failed"], flow["filtered"]]
        if not plan:
            calls = flow["api_calls"]
            row += [calls["reads"], calls["writes"], calls["rate_limited"], flow["seconds"]]
        rows.append(row)
    out = [table(headers, rows)]
    errors = [f"  {f['flow']}: {f['error']}" for f in summary["flows"] if f.get("error")]
    if errors:
        out.append("errors:\n" + "\n".join(errors))
    future = [f"  {f['flow']}: {f['future_stamped']} record(s) stamped after the read began (synced; the watermark "
              "stays at the read's start; audit notes name them)" for f in summary["flows"] if f.get("future_stamped")]
    future += [f"  {f['flow']}: {f['waiting']} parked record(s) waiting for their back-off or a lost create's grace "
               "period (`ml-connector replay` sends them now)" for f in summary["flows"] if f.get("waiting")]
    future += [f"  {f['flow']}: {'would create' if plan else 'created'} custom field(s) {', '.join(f['new_fields'])}"
               for f in summary["flows"] if f.get("new_fields")]
    future += [f"  {f['flow']}: {'would link' if plan else 'linked'} {f['linked']} record(s) to target records that "
               "exist (nothing written)" for f in summary["flows"] if f.get("linked")]
    future += _delete_notes(summary["flows"], plan)
    future += [f"  {f['flow']}: read by a server-side bulk job (read.bulk)" for f in summary["flows"]
               if f.get("read_path") == "bulk"]
    if summary.get("elsewhere"):
        future.append(f"  {', '.join(summary['elsewhere'])}: run by another process sharing this state (it held the "
                      "flow's lease, or had just run it)")
    if future:
        out.append("notes:\n" + "\n".join(future))
    out.append(f"run {summary['run_id']}: {summary['status']}")
    return "\n".join(out)


def _delete_notes(flows: Iterable[dict[str, Any]], plan: bool) -> list[str]:
    """Records deleted at the source: what was (or would be) deleted or cleared, by key, and what was refused."""
    notes = []
    for f in flows:
        done = [f"{f[name]} {word}" for name, word in (("deleted", "target record(s) deleted"),
                                                        ("cleared", "link(s) cleared")) if f.get(name)]
        if done:
            keys = f.get("delete_keys") or []
            more = f.get("deleted", 0) + f.get("cleared", 0) - len(keys)
            shown = ", ".join(keys) + (f" and {more} more" if more > 0 else "")
            notes.append(f"  {f['flow']}: {'would be ' if plan else ''}{' and '.join(done)} (deleted at the source: "
                         f"{shown})")
        if f.get("delete_refused"):
            notes.append(f"  {f['flow']}: {f['delete_refused']} delete(s) refused as a mass delete and parked (audit "
                         f"rows say why; `ml-connector replay --flow {f['flow']}` applies them)")
    return notes
