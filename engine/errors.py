"""The root of every error ml-connector raises on purpose.

The CLI catches this root once and prints the message as one line; anything else that escapes is a bug. Each part
keeps its own subclasses (ConnectorError in engine.http, SpecError in engine.spec, StateError and CredentialError in
engine.store) so that none of them imports another's.
"""

from __future__ import annotations


class MlConnectorError(Exception):
    """An error a person can act on: its message says what happened and, where it can, what to do."""


class SetupError(MlConnectorError):
    """What a command needs is not there: no workspace file, no specs where it looked, no shipped specs for the demo."""
