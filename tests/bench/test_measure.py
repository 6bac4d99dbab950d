"""What the benchmark does before it measures (no timing here)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from bench.measure import compile_bytecode


def test_the_measured_code_is_compiled_once_so_no_child_compiles_it_again(tmp_path: Path) -> None:
    """An editable install under PYTHONDONTWRITEBYTECODE=1 (this machine's environment) compiled every engine module
    from source in every child the benchmark timed; a wheel or the container has them compiled at install."""
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    for path in (package / "__init__.py", package / "a.py", package / "sub" / "__init__.py", package / "sub" / "b.py"):
        path.write_text("X = 1\n")
    assert compile_bytecode([package]) == 4
    for module in ("pkg", "pkg.a", "pkg.sub", "pkg.sub.b"):
        source = tmp_path.joinpath(*module.split(".")).with_suffix(".py")
        if not source.exists():
            source = tmp_path.joinpath(*module.split("."), "__init__.py")
        assert Path(importlib.util.cache_from_source(str(source))).is_file(), module
    # a child that may not write bytecode reads it: it compiles nothing
    probe = ("import builtins, sys; calls = []; real = builtins.compile\n"
             "def counted(*a, **k):\n    calls.append(a[1]); return real(*a, **k)\n"
             "builtins.compile = counted\nimport pkg.a, pkg.sub.b\nprint(len(calls))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert done.stdout.strip() == "0"
