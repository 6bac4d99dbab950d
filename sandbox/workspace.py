"""Workspace files that point the engine at running sandboxes (demo, tests, `sandbox up`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from ml_connector.errors import SetupError
from ml_connector.resources import shipped_specs

# The sandboxes' default credentials, handed to the engine through environment variables, as a user would.
SANDBOX_ENV = {
    "ML_SANDBOX_QAD_CLIENT_ID": "ml-connector",
    "ML_SANDBOX_QAD_USERNAME": "demo",
    "ML_SANDBOX_QAD_PASSWORD": "demo-password",
    "ML_SANDBOX_PIPEDRIVE_TOKEN": "0123456789abcdef0123456789abcdef01234567",
    "ML_SANDBOX_PIPEDRIVE_CLIENT_ID": "ml-connector-app",
    "ML_SANDBOX_PIPEDRIVE_CLIENT_SECRET": "app-secret",
    "ML_SANDBOX_PIPEDRIVE_REFRESH_TOKEN": "1:1:seeded-refresh-token",
}


def apply_env(environ: dict[str, str] | None = None) -> None:
    """Put the sandbox credentials into the environment (only where not already set)."""
    target = os.environ if environ is None else environ
    for name, value in SANDBOX_ENV.items():
        target.setdefault(name, value)


def connections(urls: dict[str, str], pipedrive_auth: str = "api_token") -> dict[str, Any]:
    """Workspace connection entries for sandboxes served at ``urls`` (marked as sandboxes: loopback is fine)."""
    entries: dict[str, Any] = {}
    if "qad" in urls:
        entries["qad"] = {
            "connector": "qad",
            "sandbox": True,
            "auth": "password",
            "settings": {"tenant_url": urls["qad"], "domain": "10USA", "entity": "10USACO"},
            "secrets": {"client_id": "env:ML_SANDBOX_QAD_CLIENT_ID", "username": "env:ML_SANDBOX_QAD_USERNAME",
                        "password": "env:ML_SANDBOX_QAD_PASSWORD"},
        }
    if "pipedrive" in urls:
        secrets = {"api_token": "env:ML_SANDBOX_PIPEDRIVE_TOKEN"} if pipedrive_auth == "api_token" else {
            "client_id": "env:ML_SANDBOX_PIPEDRIVE_CLIENT_ID",
            "client_secret": "env:ML_SANDBOX_PIPEDRIVE_CLIENT_SECRET",
            "refresh_token": "env:ML_SANDBOX_PIPEDRIVE_REFRESH_TOKEN"}
        entries["pipedrive"] = {
            "connector": "pipedrive",
            "sandbox": True,
            "auth": pipedrive_auth,
            "settings": {"api_url": urls["pipedrive"], "oauth_url": urls["pipedrive"]},
            "secrets": secrets,
        }
    return entries


class WorkspaceExists(SetupError):
    """A workspace file is where one would be written: a user's file is never replaced."""


def refuse_to_overwrite(directory: Path, command: str) -> None:
    """Raise WorkspaceExists when ``directory`` already holds a workspace.yaml (checked before anything starts)."""
    path = directory / "workspace.yaml"
    if path.exists():
        raise WorkspaceExists(f"{path} exists; {command} never replaces a workspace: remove it or choose another "
                              "--write-workspace folder")


def write_workspace(directory: Path, urls: dict[str, str], *, pipedrive_auth: str = "api_token",
                    state: str = "state/ml-connector.duckdb", overwrite: bool = True) -> Path:
    """Write ``workspace.yaml`` for the QAD <-> Pipedrive integration against the given sandbox URLs.

    ``overwrite=False``: a workspace.yaml already there is refused (WorkspaceExists), never replaced.
    """
    if not overwrite:
        refuse_to_overwrite(directory, "this command")
    if (directory / "connectors").is_dir() and (directory / "mappings" / "qad-pipedrive").is_dir():
        connectors, integration = "connectors", "mappings/qad-pipedrive"  # a project made by `init`: its own copies
    else:  # a checkout's own folders, or the data installed with the package
        specs = shipped_specs()
        connectors, integration = str(specs / "connectors"), str(specs / "mappings" / "qad-pipedrive")
    directory.mkdir(parents=True, exist_ok=True)
    document = {
        "state": state,
        "connectors": [connectors],
        "integrations": [integration],
        "connections": connections(urls, pipedrive_auth),
    }
    path = directory / "workspace.yaml"
    path.write_text("# Generated for local sandboxes; secrets are environment references, never values.\n"
                    + yaml.safe_dump(document, sort_keys=False))
    return path
