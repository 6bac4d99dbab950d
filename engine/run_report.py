"""The HTML run report: one self-contained file (inline CSS and SVG, no script, no network) a person can open,
attach to a ticket or archive: per-flow counts, failures with reasons, throughput and rate-limit waits over time,
and the flow dependency graph."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from html import escape
from typing import Any

from ml_connector.errors import SetupError
from ml_connector.http.redact import REDACTOR
from ml_connector.report_svg import Series, dependency_graph, line_chart
from ml_connector.spec import Project
from ml_connector.store import State

FAILURES_SHOWN = 200  # failed records listed one by one; the reasons table counts them all
COUNTS = ("read", "created", "updated", "unchanged", "deferred", "failed", "filtered")

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#0f172a;max-width:1100px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #cbd5e1;padding-bottom:4px}
table{border-collapse:collapse;font-size:13px}th,td{border:1px solid #cbd5e1;padding:4px 8px;text-align:right}
th{background:#f1f5f9}td.text,th.text{text-align:left}.status-ok{color:#15803d}.status-failed{color:#b91c1c}
.status-partial{color:#a16207}.muted{color:#64748b}figure{margin:12px 0}
"""


class ReportError(SetupError):
    """No run to report on (exit code 2, like a missing workspace)."""


@dataclass
class RunReport:
    """What the report shows, read from the state and the specs."""

    run: dict[str, Any]
    flows: list[dict[str, Any]]
    reasons: list[tuple[str, str, int]]  # (flow, reason, records)
    failures: list[dict[str, Any]]  # the first FAILURES_SHOWN failed audit rows
    order: list[str] = field(default_factory=list)  # every flow of the workspace, in run order
    depends_on: dict[str, list[str]] = field(default_factory=dict)


def collect(state: State, project: Project, run_id: str | None = None) -> RunReport:
    """The report's data for ``run_id`` (None: the latest run)."""
    run = state.runs.get(run_id)
    if run is None:
        raise ReportError(f"no run {run_id!r} in the state (`ml-connector status` lists recent runs)" if run_id
                          else "no run in the state yet: `ml-connector run` first")
    flows = state.runs.flows_of(run["run_id"])
    failed = state.audit.query(run_id=run["run_id"], outcome="failed", limit=1_000_000)
    reasons = Counter((row["flow"], REDACTOR(row["error"] or "no reason recorded")) for row in failed)
    order = project.flow_order()
    depends = {name: _names(project.flows[name].data.get("depends_on")) for name in order}
    return RunReport(run, flows, [(f, r, n) for (f, r), n in reasons.most_common()], failed[:FAILURES_SHOWN],
                     order, depends)


def _names(value: Any) -> list[str]:
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def _offset(flow: Mapping[str, Any], run: Mapping[str, Any]) -> float:
    """Seconds from the run's start to the flow's, so every flow sits on the run's own time axis."""
    start, begun = flow.get("started_at"), run.get("started_at")
    if isinstance(start, datetime) and isinstance(begun, datetime):
        return max((start - begun).total_seconds(), 0.0)
    return 0.0


def timeline_series(report: RunReport, value: str) -> list[Series]:
    """One series per flow of ``value`` (a progress count) against seconds since the run started."""
    out = []
    for flow in report.flows:
        samples = flow["summary"].get("timeline") or []
        offset = _offset(flow, report.run)
        out.append(Series(flow["flow"], [(offset + float(s["t"]), float(s.get(value, 0))) for s in samples]))
    return out


def _cell(value: Any, text: bool = False, css: str = "") -> str:
    classes = " ".join(c for c in ("text" if text else "", css) if c)
    return f'<td class="{classes}">{escape("" if value is None else str(value))}</td>'


def _flow_rows(flows: Sequence[Mapping[str, Any]]) -> str:
    rows = []
    for flow in flows:
        s = flow["summary"]
        calls = s.get("api_calls") or {}
        seconds = float(s.get("seconds") or 0)
        rate = f"{(s.get('read', 0) / seconds):.1f}" if seconds > 0 else ""
        cells = [_cell(flow["flow"], True), _cell(flow["status"], True, f"status-{flow['status']}")]
        cells += [_cell(s.get(name, 0)) for name in COUNTS]
        cells += [_cell(calls.get("reads", 0)), _cell(calls.get("writes", 0)), _cell(calls.get("rate_limited", 0)),
                  _cell(calls.get("waited_seconds", 0)), _cell(seconds), _cell(rate),
                  _cell(REDACTOR(s.get("error") or ""), True)]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return "".join(rows)


def render(report: RunReport) -> str:
    """The whole report as one HTML document."""
    run = report.run
    headers = ["flow", "status", *COUNTS, "API reads", "API writes", "rate-limited", "waited s", "seconds",
               "records/s", "error"]
    head = "".join(f'<th class="{"text" if h in ("flow", "status", "error") else ""}">{escape(h)}</th>'
                   for h in headers)
    status = {f["flow"]: f["status"] for f in report.flows}
    reasons = "".join(f"<tr>{_cell(f, True)}{_cell(r, True)}{_cell(n)}</tr>" for f, r, n in report.reasons)
    failures = "".join(f"<tr>{_cell(row['flow'], True)}{_cell(row['source_key'], True)}"
                       f"{_cell(REDACTOR(row['error'] or ''), True)}{_cell(row['attempts'])}</tr>"
                       for row in report.failures)
    total_failed = sum(n for _, _, n in report.reasons)
    shown = (f'<p class="muted">the first {len(report.failures)} of {total_failed}</p>'
             if total_failed > len(report.failures) else "")
    throughput = line_chart(
        [Series(f"{s.name} read", s.points, group=i) for i, s in enumerate(timeline_series(report, "read"))]
        + [Series(f"{s.name} written", s.points, group=i, dashed=True)
           for i, s in enumerate(timeline_series(report, "written"))],
        title="Records read and written over time", x_label="seconds since the run started", y_label="records")
    waits = line_chart(timeline_series(report, "waited_seconds"), title="Rate-limit and back-off waits over time",
                       x_label="seconds since the run started", y_label="seconds waited (cumulative)")
    failure_html = (f"<table><tr><th class='text'>flow</th><th class='text'>reason</th><th>records</th></tr>"
                    f"{reasons}</table><h3>Failed records</h3>{shown}<table><tr><th class='text'>flow</th>"
                    f"<th class='text'>source key</th><th class='text'>error</th><th>attempts</th></tr>{failures}"
                    "</table>") if report.reasons else "<p>No record failed in this run.</p>"
    title = f"ml-connector run {run['run_id']}"
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'<style>{STYLE}</style></head><body><h1>{escape(title)}</h1>'
            f'<p id="run-status">status <b class="status-{escape(run["status"])}">{escape(run["status"])}</b>, '
            f'mode {escape(run["mode"])}, started {escape(str(run["started_at"]))} UTC, finished '
            f'{escape(str(run["finished_at"] or "-"))} UTC</p>'
            f'<h2>Flows</h2><table id="flows"><tr>{head}</tr>{_flow_rows(report.flows)}</table>'
            f'<h2>Failures</h2><div id="failures">{failure_html}</div>'
            f'<h2>Throughput and waits</h2><figure id="throughput">{throughput}</figure>'
            f'<figure id="waits">{waits}</figure>'
            f'<h2>Flow dependencies</h2><figure id="graph">'
            f'{dependency_graph(report.order, report.depends_on, status)}</figure>'
            "</body></html>\n")
