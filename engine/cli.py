"""The `ml-connector` command line. Each command is a small function; add new ones with `@main.command()`."""

from __future__ import annotations

import os
from pathlib import Path

import click

from engine.spec import SpecProblem, load_specs

DEFAULT_SPEC_PATHS = ("connectors", "mappings")


@click.group()
def main() -> None:
    """ml-connector: a declarative, config-driven sync engine."""


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--workspace",
    "workspace",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also check this workspace file (and the connectors and integrations it names).",
)
def validate(paths: tuple[Path, ...], workspace: Path | None) -> None:
    """Check specs (default: ./connectors and ./mappings); print problems as file:line: field: message."""
    targets = list(paths) or [Path(p) for p in DEFAULT_SPEC_PATHS]
    project, problems = load_specs(targets, workspace=workspace)
    for problem in problems:
        click.echo(format_problem(problem))
    files, count = len(project.files), len(problems)
    click.echo(f"{files} {_plural(files, 'file')}, {count} {_plural(count, 'problem')}")
    if problems:
        raise SystemExit(1)


def format_problem(problem: SpecProblem) -> str:
    """`file:line: field: message`, the file relative to the current directory when it lies below it."""
    return f"{display_path(problem.file)}:{problem.line}: {problem.field}: {problem.message}"


def display_path(file: str) -> str:
    """`file` relative to the current directory when it lies below it, else as given."""
    path = Path(file)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return os.path.normpath(file)


def _plural(count: int, word: str) -> str:
    return word if count == 1 else word + "s"


if __name__ == "__main__":
    main()
