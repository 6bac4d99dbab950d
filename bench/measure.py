"""How the benchmark measures a contender, and what it records about the machine and the commit.

Every contender runs as its own child process, so each pays interpreter start-up alike; ``os.wait4`` gives that
child's own CPU time and peak RSS (RUSAGE_CHILDREN for exactly one child, not the maximum over every child so far).
"""

from __future__ import annotations

import compileall
import json
import os
import platform
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable
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


def compile_bytecode(folders: Iterable[Path]) -> int:
    """Compile the measured code's modules to bytecode once, before any child runs, and return how many there are.

    The engine is installed editable here, and this machine sets PYTHONDONTWRITEBYTECODE, so every child the benchmark
    timed compiled some 120 modules from source (0.1-0.25 s of CPU a process, measured): a cost no deployed engine
    pays (a wheel's modules, the container's, are compiled at install). Children still only read the bytecode, and
    Python ignores a cache whose source changed since."""
    modules = 0
    for folder in folders:
        if not compileall.compile_dir(str(folder), quiet=1):
            raise SystemExit(f"bench: {folder} does not compile")
        modules += sum(1 for _ in Path(folder).rglob("*.py"))
    return modules


def run_child(argv: list[str], env: dict[str, str] | None = None) -> ChildRun:
    """Run ``argv`` to its end; wall time, the child's own CPU time and peak RSS.

    The peak is the child's VmHWM, read while it runs: ``wait4``'s ``ru_maxrss`` keeps the RSS of the process it was
    spawned from (Linux carries it across exec), so every child looked as big as this benchmark with its sandboxes.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(argv, stdout=out, stderr=err, cwd=REPO, env=env)
        peak = _Peak(process.pid)
        peak.start()
        _pid, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        peak.stop.set()
        peak.join()
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return ChildRun(wall, usage.ru_utime + usage.ru_stime, peak.kib / 1024, process.returncode,
                        out.read().decode("utf-8", "replace"), err.read().decode("utf-8", "replace"))


class _Peak(threading.Thread):
    """Reads a process's VmHWM (its own peak RSS since exec) every 20 ms until told to stop."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.path = Path(f"/proc/{pid}/status")
        self.stop = threading.Event()
        self.kib = 0

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                for line in self.path.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        self.kib = max(self.kib, int(line.split()[1]))
            except (OSError, ValueError):
                pass
            self.stop.wait(0.02)


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
