"""The command line behaves the same everywhere (issue 19, CLI consistency).

The walk below covers every command of the group, including those added later: each option has help text, each
command's help shows an example, `-w` names the workspace wherever one is read, and `-v` works after the command.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from ml_connector.cli import main
from ml_connector.sync.runner import Runner
from tests.engine.tiny_workspace import write_workspace

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
#: Commands that print data, and so offer --json.
PRINT_DATA = [("plan",), ("run",), ("status",), ("audit",), ("replay",), ("secret", "list"), ("validate",), ("prune",),
              ("test",), ("sandbox", "up")]


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def commands(group: click.Group = main, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...],
                                                                                   click.Command]]:
    for name, command in sorted(group.commands.items()):
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from commands(command, (*path, name))


ALL = list(commands())


def test_version() -> None:
    result = cli("--version")
    assert result.exit_code == 0
    assert result.stdout == f"ml-connector, version {version('ml-connector')}\n"


def test_verbose_is_accepted_after_the_command_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KEY", "k-123456")
    workspace = str(write_workspace(tmp_path))

    async def broken(self: Runner, *args: object, **kwargs: object) -> None:
        raise KeyError("surprise")

    monkeypatch.setattr(Runner, "run", broken)
    for args in (["-vv", "run", "-w", workspace], ["run", "-w", workspace, "-vv"],
                 ["-v", "run", "-v", "-w", workspace]):
        result = cli(*args)
        assert result.exit_code == 4, args
        assert "Traceback (most recent call last)" in result.stderr, args
    quiet = cli("run", "-w", workspace)
    assert "Traceback" not in quiet.stderr


@pytest.mark.parametrize(("path", "command"), ALL, ids=[" ".join(path) for path, _ in ALL])
def test_every_command_explains_its_options_and_shows_an_example(path: tuple[str, ...],
                                                                 command: click.Command) -> None:
    result = cli(*path, "--help")
    assert result.exit_code == 0, result.output
    silent = [param.opts[0] for param in command.params
              if isinstance(param, click.Option) and not param.help and param.name != "help"]
    assert silent == [], f"ml-connector {' '.join(path)}: options without help text"
    example = re.search(rf"Examples?:\s*\n\s+ml-connector (.* )?{re.escape(' '.join(path))}\b", result.stdout)
    assert example, f"ml-connector {' '.join(path)}: no 'Example:' line running it in its --help"
    assert "-v, --verbose" in result.stdout


@pytest.mark.parametrize(("path", "command"), ALL, ids=[" ".join(path) for path, _ in ALL])
def test_a_workspace_is_always_named_with_w(path: tuple[str, ...], command: click.Command) -> None:
    for param in command.params:
        if isinstance(param, click.Option) and "--workspace" in param.opts:
            assert "-w" in param.opts, f"ml-connector {' '.join(path)}: --workspace without -w"


@pytest.mark.parametrize("path", PRINT_DATA, ids=[" ".join(path) for path in PRINT_DATA])
def test_commands_that_print_data_offer_json(path: tuple[str, ...]) -> None:
    result = cli(*path, "--help")
    assert result.exit_code == 0
    assert "--json" in result.stdout, f"ml-connector {' '.join(path)} has no --json"


def test_the_exit_codes_are_the_same_in_help_and_readme() -> None:
    helped = cli("--help").stdout
    readme = README.read_text()
    for code, meaning in (("0", "ok"), ("1", "some records failed"), ("2", "specs, workspace or state invalid"),
                          ("3", "a flow failed"), ("4", "unexpected error"), ("130, 143", "interrupted by SIGINT")):
        assert f"{code}  {meaning}" in helped
        assert f"| {code} | {meaning}" in readme


def test_prune_and_test_say_it_in_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    tested = cli("test", "--json")
    assert tested.exit_code == 0, tested.output
    data = json.loads(tested.stdout)
    assert data["failures"] == 0 and data["examples"] == len(data["results"]) > 0
    assert set(data["results"][0]) == {"file", "line", "example", "ok", "message"}
    workspace = str(write_workspace(tmp_path))
    pruned = cli("prune", "-w", workspace, "--keep", "30d", "--json")
    assert pruned.exit_code == 0, pruned.output
    assert json.loads(pruned.stdout) == {"removed": 0, "older_than": "30d"}
