"""`ml-connector report`: a self-contained HTML report of a run, checked as data and rendered by headless Chromium.

CI: the rendering test needs a Chromium binary (Debian: `apt-get install chromium`); without one it is skipped and
says so.
"""

from __future__ import annotations

import functools
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result

import ml_connector.cli
from ml_connector.cli import main
from ml_connector.store import State
from ml_connector.sync.runner import Runner
from tests.engine.fakeapi import FakeAPI
from tests.engine.tiny_workspace import CONNECTOR, FLOW, INTEGRATION, write_workspace

THINGS = FLOW.replace('filter: "`false`"\n', "")
OTHERS = FLOW.replace("flow: things", "flow: others") + "depends_on: [things]\n"
RECORDS = {"data": [{"id": i, "name": f"n{i}", "updated": "2026-01-01"} for i in (1, 2, 3)]}
CHROMIUM = next((found for name in ("chromium", "chromium-browser", "google-chrome")
                 if (found := shutil.which(name))), None)


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A run of two flows (others depends on things): things creates 2 records and parks 1 with a reason."""
    monkeypatch.setenv("FAKE_KEY", "k-123456")
    monkeypatch.delenv("ML_CONNECTOR_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    path = write_workspace(tmp_path, flow=THINGS,
                           connector=CONNECTOR.replace("path: /things}", "path: /things, id: id}"))
    (tmp_path / "mappings" / "pair" / "others.yaml").write_text(OTHERS)
    (tmp_path / "mappings" / "pair" / "integration.yaml").write_text(
        INTEGRATION.replace("[things.yaml]", "[things.yaml, others.yaml]"))
    api = FakeAPI().on("GET", "/v2/things", 200, RECORDS)
    api.on("POST", "/v2/things", 201, {"id": 11}).on("POST", "/v2/things", 201, {"id": 12})
    api.on("POST", "/v2/things", 422, {"error": "name n3 is not allowed"})
    monkeypatch.setattr(ml_connector.cli, "Runner",
                        functools.partial(Runner, transport=httpx.ASGITransport(app=api.app)))
    result = cli("run", "-w", str(path))
    assert result.exit_code == 1, result.output
    return path


def run_id(workspace: Path) -> str:
    state = State(workspace.parent / "state" / "state.duckdb")
    try:
        found = state.runs.get()
        assert found is not None
        return str(found["run_id"])
    finally:
        state.close()


def test_the_report_has_counts_failures_charts_and_the_graph(workspace: Path) -> None:
    result = cli("report", "-w", str(workspace), "--output", "run.html")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"wrote run.html (run {run_id(workspace)}: partial)\n"
    html = (workspace.parent / "run.html").read_text()
    rows = re.findall(r"<tr>(<td.*?)</tr>", html.split('id="flows"')[1].split("</table>")[0])
    cells = [re.findall(r">([^<]*)</td>", row) for row in rows]
    assert [c[:9] for c in cells] == [["things", "ok", "3", "2", "0", "0", "0", "1", "0"],
                                      ["others", "ok", "3", "0", "0", "0", "0", "0", "3"]]
    failures = html.split('id="failures"')[1]
    assert "name n3 is not allowed" in failures and "<td class=\"text\">3</td>" in failures
    assert 'data-series="things written"' in html and 'data-series="others read"' in html
    assert '<line class="edge" data-from="things" data-to="others"' in html
    assert "<script" not in html and "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_a_run_that_is_not_there_is_one_line_exit_2(workspace: Path) -> None:
    result = cli("report", "nope", "-w", str(workspace))
    assert result.exit_code == 2
    assert result.stderr == "ml-connector: no run 'nope' in the state (`ml-connector status` lists recent runs)\n"


def test_help_gives_an_example() -> None:
    assert "ml-connector report -o last-run.html" in cli("report", "--help").output


def _pixels(png: bytes) -> tuple[int, int, list[bytes]]:
    """Rows of RGB(A) pixels of an 8-bit, non-interlaced PNG (what Chromium writes), unfiltered."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, data, header = 8, b"", b""
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos:pos + 8])
        chunk = png[pos + 8:pos + 8 + length]
        header = chunk if kind == b"IHDR" else header
        data += chunk if kind == b"IDAT" else b""
        pos += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour in (2, 6)
    step = 3 if colour == 2 else 4
    raw, stride, rows, previous = zlib.decompress(data), width * step, [], bytearray(width * step)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - step] if i >= step else 0
            up, corner = previous[i], previous[i - step] if i >= step else 0
            if kind == 1:
                line[i] = (line[i] + left) & 255
            elif kind == 2:
                line[i] = (line[i] + up) & 255
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 255
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 255
        rows.append(bytes(line))
        previous = line
    return width, step, rows


def _count(rows: list[bytes], step: int, rgb: tuple[int, int, int]) -> int:
    wanted = bytes(rgb)
    return sum(1 for row in rows for i in range(0, len(row), step) if row[i:i + 3] == wanted)


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium to render the report (Debian: apt-get install chromium)")
def test_the_report_renders_in_headless_chromium(workspace: Path, tmp_path: Path) -> None:
    assert cli("report", "-w", str(workspace), "-o", "run.html").exit_code == 0
    page = (workspace.parent / "run.html").resolve().as_uri()
    assert CHROMIUM is not None
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*flags, "--dump-dom", page], capture_output=True, text=True, timeout=120, check=True).stdout
    assert dom.count("<svg") == 3 and "ml-connector run " in dom  # parsed: two charts and the graph
    shot = tmp_path / "shot.png"  # kept in the test's tmp_path for a person to look at
    subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1280,2200", page], capture_output=True,
                   timeout=120, check=True)
    _, step, rows = _pixels(shot.read_bytes())
    assert _count(rows, step, (0x1E, 0x3A, 0x8A)) > 200  # the graph's box outlines were drawn
    assert _count(rows, step, (0x25, 0x63, 0xEB)) > 20  # the first chart series was drawn


def test_the_default_run_is_the_latest_sync_not_a_change_made_by_hand(workspace: Path) -> None:
    synced = run_id(workspace)
    assert cli("watermark", "reset", "things", "-w", str(workspace)).exit_code == 0
    result = cli("report", "-w", str(workspace), "-o", "-")
    assert result.exit_code == 0, result.output
    assert f"<title>ml-connector run {synced}</title>" in result.stdout
