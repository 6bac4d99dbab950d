"""`ml-connector report`: write the HTML report of a run (see ml_connector/run_report.py)."""

from __future__ import annotations

from pathlib import Path

import click

from ml_connector.commands.options import workspace_option
from ml_connector.run_report import collect, render
from ml_connector.workspace import Workspace


@click.command("report")
@click.argument("run_id", required=False)
@workspace_option
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False),
              help="The HTML file to write (default: ml-connector-report-<run>.html here); '-' writes to stdout.")
def report(run_id: str | None, workspace_path: Path, output: Path | None) -> None:
    """Write a self-contained HTML report of a run (default: the latest): per-flow counts, failures with
    reasons, throughput and rate-limit waits over time, and the flow dependency graph. No script, no network:
    open it in any browser, attach it to a ticket.

    \b
    Examples:
      ml-connector report -o last-run.html
      ml-connector report 20261205T020335-564708cf --output run.html
    """
    workspace = Workspace.open(workspace_path)
    state = workspace.state()
    try:
        data = collect(state, workspace.project, run_id)
    finally:
        state.close()
    html = render(data)
    if output is not None and str(output) == "-":
        click.echo(html, nl=False)
        return
    target = output or Path(f"ml-connector-report-{data.run['run_id']}.html")
    target.write_text(html, encoding="utf-8")
    click.echo(f"wrote {target} (run {data.run['run_id']}: {data.run['status']})")
