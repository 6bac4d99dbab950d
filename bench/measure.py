"""How the benchmark measures a contender, and what it records about the machine and the commit.

Every contender runs as its own child process, so each pays interpreter start-up alike; ``os.wait4`` gives that
child's own CPU time and peak RSS (RUSAGE_CHILDREN for exactly one child, not the maximum over every child so far).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class ChildRun:
    wall: float  # seconds
    cpu: float  # user + system seconds of the child
    peak_mib: float
    code: int
    stdout: str
    stderr: str

    def json(self) -> dict[str, Any]:
        """The child's JSON summary: all of stdout, or else its last line that is a JSON object."""
        text = self.stdout.strip()
        candidates = [text, *reversed(text.splitlines())]
        for candidate in candidates:
            if candidate.startswith("{"):
                try:
                    return dict(json.loads(candidate))
                except ValueError:
                    continue
        raise RuntimeError(f"no JSON summary (exit {self.code}):\n{self.stdout[-2000:]}\n{self.stderr[-2000:]}")


def run_child(argv: list[str], env: dict[str, str] | None = None) -> ChildRun:
    """Run ``argv`` to its end; wall time, the child's own CPU time and peak RSS."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(argv, stdout=out, stderr=err, cwd=REPO, env=env)
        _pid, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return ChildRun(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, process.returncode,
                        out.read().decode("utf-8", "replace"), err.read().decode("utf-8", "replace"))


def machine() -> dict[str, str]:
    """CPU model, cores, RAM, Python and OS of the machine measured."""
    cpu = platform.processor() or "unknown"
    ram = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": str(os.cpu_count()), "ram": ram, "python": platform.python_version(),
            "os": platform.platform()}


def commit() -> str:
    """`git rev-parse HEAD`, with "(dirty)" when the work tree has changes: what exactly was measured."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return head + (" (dirty)" if dirty else "")
