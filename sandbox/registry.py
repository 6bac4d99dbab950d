"""The sandboxes by name, with their default ports."""

from __future__ import annotations

import importlib
from typing import Any

from ml_connector.sandbox.core import Sandbox

SANDBOXES: dict[str, tuple[str, str, int]] = {
    "qad": ("ml_connector.sandbox.qad", "create_qad_sandbox", 8701),
    "pipedrive": ("ml_connector.sandbox.pipedrive", "create_pipedrive_sandbox", 8702),
    "zoho": ("ml_connector.sandbox.zoho", "create_zoho_sandbox", 8703),
    "salesforce": ("ml_connector.sandbox.salesforce", "create_salesforce_sandbox", 8704),
    "adobe_commerce": ("ml_connector.sandbox.adobe_commerce", "create_adobe_commerce_sandbox", 8706),
    "marketo": ("ml_connector.sandbox.marketo", "create_marketo_sandbox", 8707),
}


def create_sandbox(name: str, **options: Any) -> Sandbox:
    """A fresh sandbox of the named system."""
    if name not in SANDBOXES:
        raise KeyError(f"no sandbox named {name!r}; known: {', '.join(sorted(SANDBOXES))}")
    module, factory, _port = SANDBOXES[name]
    sandbox: Sandbox = getattr(importlib.import_module(module), factory)(**options)
    return sandbox


def default_port(name: str) -> int:
    return SANDBOXES[name][2]
