"""docs/spec-language.md "Tutorial: add a flow", run as written: commands, the file it says to write, the sandboxes."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from ml_connector.sandbox.workspace import SANDBOX_ENV

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "spec-language.md"
BACKGROUND = "# in a second terminal"


def tutorial() -> str:
    text = DOC.read_text()
    start = text.index("## Tutorial: add a flow")
    return text[start:text.index("\n## ", start + 1)]


def steps(section: str) -> list[tuple[str, str, str]]:
    """("command", line, "") for each `$` line and ("write", path, yaml) for each "Write `path`:" block, in order."""
    found: list[tuple[int, tuple[str, str, str]]] = []
    for block in re.finditer(r"```console\n(.*?)```", section, re.S):
        for offset, line in enumerate(block.group(1).splitlines()):
            if line.startswith("$ "):
                found.append((block.start() + offset, ("command", line[2:].strip(), "")))
    for block in re.finditer(r"Write\s+`([^`]+)`:\n```yaml\n(.*?)```", section, re.S):
        found.append((block.start(), ("write", block.group(1), block.group(2))))
    return [step for _, step in sorted(found)]


def test_the_tutorial_runs_as_written(tmp_path: Path) -> None:
    cli = str(Path(sys.executable).parent / "ml-connector")
    env = {**os.environ, **SANDBOX_ENV}
    cwd, background, outputs = tmp_path, [], []
    found = steps(tutorial())
    assert [kind for kind, _, _ in found].count("write") == 1 and len(found) >= 9
    try:
        for kind, what, text in found:
            if kind == "write":
                (cwd / what).write_text(text)
                continue
            words = shlex.split(what.split(BACKGROUND)[0], comments=True)
            if words[0] == "cd":
                cwd = cwd / words[1]
                continue
            assert words[0] == "ml-connector", what
            if BACKGROUND in what:
                process = subprocess.Popen([cli, *words[1:]], cwd=cwd, env=env, stdout=subprocess.PIPE,
                                           stderr=subprocess.STDOUT, text=True, start_new_session=True)
                background.append(process)
                deadline = time.monotonic() + 60
                while not (cwd / "workspace.yaml").exists() and time.monotonic() < deadline:
                    time.sleep(0.1)
                continue
            done = subprocess.run([cli, *words[1:]], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, f"$ {what}\n{done.stdout}\n{done.stderr}"
            outputs.append((what, done.stdout))
        again = subprocess.run([cli, "run", "--json", "--flow", "items_to_products_200"], cwd=cwd, env=env,
                               capture_output=True, text=True, timeout=300)
        assert again.returncode == 0, again.stderr
    finally:
        for process in background:
            os.killpg(process.pid, signal.SIGINT)
            process.wait(timeout=30)
    ran = dict(outputs)
    run = ran["ml-connector run --flow items_to_products_200"]
    row = next(line.split() for line in run.splitlines() if line.startswith("items_to_products_200"))
    assert row[1] == "ok" and int(row[3]) > 0 and int(row[8]) > 0, run  # status, created, filtered
    assert '"created": 0' in again.stdout and '"updated": 0' in again.stdout, again.stdout
