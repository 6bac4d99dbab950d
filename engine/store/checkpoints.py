"""Checkpoints that a killed process cannot tear: a copy of the file is kept until the checkpoint is complete.

DuckDB rewrites its current metadata block in place during a checkpoint. A SIGKILL can cut that write short (the
kernel stops a write between pages when a fatal signal is pending), and the file then fails its checksum for good:
the 30-minute soak lost its whole state that way once in about 700 runs. So before a checkpoint that has a log to
fold in, the file is copied (to a temporary name, synced, then renamed), and the copy is removed once the checkpoint
returned. A copy found beside a log at the next open means a checkpoint was cut off: the copy is the file as it was
before, and the log, which DuckDB removes only after a complete checkpoint, replays everything since.

The copy and the restore must not race another process, so each open state holds an exclusive lock file.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
from pathlib import Path
from typing import IO

log = logging.getLogger("ml_connector.state")


class Locked(Exception):
    """Another process holds the state's lock file."""


def lock(path: str) -> IO[bytes]:
    """Hold ``<path>.lock`` for as long as the returned file is open (POSIX locks: one process may re-take it)."""
    handle = open(path + ".lock", "ab")  # noqa: SIM115 - held open for the database's lifetime
    try:
        fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        handle.close()
        raise Locked(str(exc)) from exc
    return handle


def copy_path(path: str) -> str:
    return path + ".ckpt"


def keep_a_copy(path: str) -> None:
    """Copy the file before a checkpoint changes it: written aside, synced, then renamed into place."""
    partial = copy_path(path) + ".partial"
    shutil.copyfile(path, partial)
    with open(partial, "rb") as copied:
        os.fsync(copied.fileno())
    os.replace(partial, copy_path(path))
    _sync_folder(path)


def drop_the_copy(path: str) -> None:
    Path(copy_path(path)).unlink(missing_ok=True)


def put_back(path: str) -> None:
    """The file as it was before the checkpoint that made the copy (its log replays everything since)."""
    os.replace(copy_path(path), path)
    _sync_folder(path)


def recover(path: str, wal: str) -> None:
    """Before connecting: undo a checkpoint that was cut off, or drop a copy a complete checkpoint left behind."""
    Path(copy_path(path) + ".partial").unlink(missing_ok=True)
    copy = copy_path(path)
    if not os.path.exists(copy):
        return
    if os.path.exists(wal):
        put_back(path)
        log.warning("the state database %s was stopped in the middle of a checkpoint: it was put back as it was "
                    "before, and its write-ahead log replays the changes since", path)
    else:
        drop_the_copy(path)


def _sync_folder(path: str) -> None:
    folder = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
