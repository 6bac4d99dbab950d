"""Issue 24 (start-up and exit cost): what a command has imported lives as long as the process, so the collector
need not walk it again.

Importing the engine leaves about 50,000 objects the cyclic collector tracks: every full collection of a run walked
them all (0.22 s of a 10,000-write first sync, 0.07 s once frozen) and so did the interpreter's exit (0.11 s a
command, 0.01 s once frozen). The command line's entry points move them to the permanent generation (`gc.freeze`);
code that calls `main` in process (tests, embedding programs) keeps its collector as it was.
"""

from __future__ import annotations

import gc
import subprocess
import sys

import pytest
from click.testing import CliRunner

from ml_connector.cli import main

REPORT = "import atexit, gc, sys; atexit.register(lambda: print('frozen', gc.get_freeze_count(), file=sys.stderr)); "
ENTRIES = {
    "console script": "from importlib.metadata import entry_points; "
                      "entry = entry_points(group='console_scripts')['ml-connector'].load(); "
                      "sys.argv = ['ml-connector', '--version']; entry()",
    "python -m": "import runpy; sys.argv = ['ml-connector', '--version']; "
                 "runpy.run_module('ml_connector.cli', run_name='__main__')",
}


@pytest.mark.parametrize("entry", ENTRIES)
def test_a_command_freezes_what_it_imported_before_it_runs(entry: str) -> None:
    finished = subprocess.run([sys.executable, "-c", REPORT + ENTRIES[entry]], capture_output=True, text=True,
                              timeout=60)

    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.startswith("ml-connector, version ")
    [line] = [line for line in finished.stderr.splitlines() if line.startswith("frozen ")]
    assert int(line.split()[1]) > 20_000  # the engine's modules, their classes, functions and constants


def test_main_called_in_process_leaves_the_collector_alone() -> None:
    before = gc.get_freeze_count()

    result = CliRunner().invoke(main, ["--version"])

    assert result.exit_code == 0
    assert gc.get_freeze_count() == before
