"""`ml-connector init DIR`: a project of one's own, starting from copies of the shipped specs.

The shipped specs sit inside the installed package, where edits would be lost at the next upgrade; a project keeps
editable copies in its own connectors/ and mappings/, which `validate`, `test` and workspaces then use. A file that is
already there is someone's work: it is kept, never overwritten.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import click

from ml_connector.resources import shipped_specs, spec_files


def copy_shipped_specs(project: Path) -> tuple[list[Path], list[Path]]:
    """Copy every shipped spec below ``project`` unless a file is there; (copied, kept), relative paths."""
    root = shipped_specs()
    copied: list[Path] = []
    kept: list[Path] = []
    for relative in spec_files():
        target = project / relative
        if target.exists():
            kept.append(relative)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / relative, target)
        copied.append(relative)
    return copied, kept


@click.command("init")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False), default=Path("."))
def init(directory: Path) -> None:
    """Copy the shipped connector and mapping specs into DIRECTORY (default: here) for editing.

    Files already there are kept, never overwritten.

    \b
    Example:
      ml-connector init my-project && cd my-project && ml-connector validate
    """
    copied, kept = copy_shipped_specs(directory)
    for relative in copied:
        click.echo(f"copied {relative.as_posix()}")
    for relative in kept:
        click.echo(f"kept {relative.as_posix()} (already there; not overwritten)")
    click.echo(f"{len(copied)} copied, {len(kept)} kept in {directory}; next: edit them, then `ml-connector validate` "
               f"there, and write a workspace.yaml naming connectors/ and mappings/<pair>/")
