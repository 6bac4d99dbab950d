"""The package as a user gets it: a wheel installed (not editable) into a fresh venv, run from an empty folder."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from ml_connector.extras import EXTRAS

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]
# What a build must not pick up from the working tree: caches, venvs, state a run left behind.
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "venv", "*.egg-info", "build", "dist", "__pycache__", ".*_cache",
                                    ".typecheck", ".hypothesis", "demo-workspace", "state", "*.duckdb*")


def run(args: list[str | Path], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a command outside the project's venv: no PYTHONPATH or VIRTUAL_ENV leaking the checkout in."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    return subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"{result.args}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def test_every_code_folder_is_a_listed_package() -> None:
    """A folder of modules missing from `packages` is missing from the wheel (and only an installed user sees it)."""
    folders = {"ml_connector": REPO / "engine", "ml_connector.sandbox": REPO / "sandbox"}
    found = set(folders)
    for name, root in folders.items():
        for module in root.rglob("*.py"):
            parts = module.parent.relative_to(root).parts
            if "__pycache__" not in parts:
                found.add(".".join((name, *parts)))
    assert found <= set(SETUPTOOLS["packages"])


def test_the_sandbox_extra_and_the_modules_it_brings_agree() -> None:
    names = {re.split(r"[<>=!~\[ ]", requirement)[0].lower()
             for requirement in PYPROJECT["project"]["optional-dependencies"]["sandbox"]}
    assert names == set(EXTRAS["sandbox"][1])
    assert not names & {re.split(r"[<>=!~\[ ]", r)[0].lower() for r in PYPROJECT["project"]["dependencies"]}


@pytest.mark.duckdb_only  # the demo's state is the DuckDB file it checks
def test_an_installed_wheel_runs_the_demo_from_an_empty_folder(tmp_path: Path) -> None:
    source, dist, venv, empty = (tmp_path / name for name in ("source", "dist", "venv", "empty"))
    shutil.copytree(REPO, source, ignore=NOT_SOURCE)  # the working tree as it is, built away from the checkout
    ok(run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", dist, source], cwd=tmp_path))
    wheel = next(dist.glob("ml_connector-*.whl"))
    ok(run([sys.executable, "-m", "venv", venv], cwd=tmp_path))
    ok(run([venv / "bin" / "pip", "install", "--quiet", f"{wheel}[sandbox]"], cwd=tmp_path, timeout=300))
    empty.mkdir()
    cli = venv / "bin" / "ml-connector"

    where = ok(run([venv / "bin" / "python", "-c", "import ml_connector, ml_connector.resources as r; "
                    "print(ml_connector.__file__); print(r.shipped_specs())"], cwd=empty)).split()
    site = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    assert where == [str(site / "ml_connector" / "__init__.py"), str(site / "ml_connector_specs")]
    assert ok(run([cli, "--version"], cwd=empty)).startswith("ml-connector, version ")

    demo = ok(run([cli, "demo"], cwd=empty, timeout=180))
    assert "NOT OK" not in demo
    assert len([line for line in demo.splitlines() if line.startswith("   ok ")]) == 13, demo  # the demo's checks
    assert (empty / "demo-workspace" / "state" / "ml-connector.duckdb").is_file()

    ok(run([cli, "init", "project"], cwd=empty))
    assert (empty / "project" / "connectors" / "qad.yaml").read_text() == (REPO / "connectors" / "qad.yaml").read_text()
    assert ok(run([cli, "validate"], cwd=empty / "project")).endswith(", 0 problems\n")

    ok(run([venv / "bin" / "pip", "uninstall", "--yes", "--quiet", "sortedcontainers"], cwd=tmp_path))
    without = run([cli, "demo", "--dir", "second"], cwd=empty)
    assert (without.returncode, without.stderr) == (
        2, "ml-connector: the sandboxes need the optional extra 'sandbox' (missing module sortedcontainers): "
           "pip install 'ml-connector[sandbox]'\n")
