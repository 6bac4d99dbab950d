"""Workspace files that point the engine at running sandboxes (demo, tests, `sandbox up`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
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
    "ML_SANDBOX_ZOHO_CLIENT_ID": "1000.SANDBOXEUCLIENT0000000000000",
    "ML_SANDBOX_ZOHO_CLIENT_SECRET": "sandbox-eu-client-secret",
    "ML_SANDBOX_ZOHO_REFRESH_TOKEN": "1000.sandbox-eu-refresh-token.0000000000000000",
    "ML_SANDBOX_SALESFORCE_CLIENT_ID": "3MVG9SANDBOX.ERPSync.ClientCredentials.ExternalClientApp",
    "ML_SANDBOX_SALESFORCE_CLIENT_SECRET": "sandbox-salesforce-client-secret",
    "ML_SANDBOX_COMMERCE_CONSUMER_KEY": "sbxck7q2m4x9r1t6w3e8y5u0i2o4p6a8",
    "ML_SANDBOX_COMMERCE_CONSUMER_SECRET": "sbxcs3n5b7v9c1x3z5l7k9j1h3g5f7d9",
    "ML_SANDBOX_COMMERCE_ACCESS_TOKEN": "sbxat8w6e4r2t0y8u6i4o2p0a8s6d4f2",
    "ML_SANDBOX_COMMERCE_ACCESS_TOKEN_SECRET": "sbxts1q3w5e7r9t1y3u5i7o9p1a3s5d7",
    "ML_SANDBOX_COMMERCE_IMS_CLIENT_ID": "5c0a1f2e3d4b5a697887a6b5c4d3e2f1",
    "ML_SANDBOX_COMMERCE_IMS_CLIENT_SECRET": "p8e-SBXcommerceACCSclientSecret00000001",
    "ML_SANDBOX_MARKETO_CLIENT_ID": "5d3b6a52-7c1e-4c55-9a8e-123abc456707",
    "ML_SANDBOX_MARKETO_CLIENT_SECRET": "SandboxMarketoSecret123ABC456xyz",
}
COMMERCE_TENANT_ID = "SbxTenant7Qm2Lx9Rk4Wd8Vp3"  # the sandbox's Cloud Service tenant
SALESFORCE_ORG_ID = "00D5g0000000001EAA"  # the sandbox org: the Pub/Sub tenant id
ZOHO_ACCOUNTS_HOST = "127.0.0.2"  # the sandbox's EU data center, where its default org lives
# the CRM sandbox each shipped integration needs
PAIRS = {"pipedrive": "qad-pipedrive", "zoho": "qad-zoho", "salesforce": "qad-salesforce",
         "adobe_commerce": "adobe-commerce-qad", "marketo": "qad-marketo"}


def apply_env(environ: dict[str, str] | None = None) -> None:
    """Put the sandbox credentials into the environment (only where not already set)."""
    target = os.environ if environ is None else environ
    for name, value in SANDBOX_ENV.items():
        target.setdefault(name, value)


def connections(urls: dict[str, str], pipedrive_auth: str = "api_token",
                commerce_deployment: str = "paas") -> dict[str, Any]:
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
    if "zoho" in urls:
        # The refresh token belongs to the EU org: its accounts server is the EU one. The API host is left at
        # the US default on purpose: every call must go where the token response's api_domain says.
        served = httpx.URL(urls["zoho"])
        entries["zoho"] = {
            "connector": "zoho-crm",
            "sandbox": True,
            "settings": {"accounts_url": str(served.copy_with(host=ZOHO_ACCOUNTS_HOST)).rstrip("/"),
                         "api_domain": str(served).rstrip("/")},
            "secrets": {"client_id": "env:ML_SANDBOX_ZOHO_CLIENT_ID",
                        "client_secret": "env:ML_SANDBOX_ZOHO_CLIENT_SECRET",
                        "refresh_token": "env:ML_SANDBOX_ZOHO_REFRESH_TOKEN"},
        }
    if "salesforce" in urls:
        # The sandbox answers on any host as the org's My Domain; its Pub/Sub server (when started) is plain gRPC.
        pubsub = urls.get("salesforce_pubsub")
        entries["salesforce"] = {
            "connector": "salesforce",
            "sandbox": True,
            "settings": {"my_domain_url": urls["salesforce"].rstrip("/"), "org_id": SALESFORCE_ORG_ID,
                         **({"pubsub_target": pubsub, "pubsub_tls": "false"} if pubsub else {})},
            "secrets": {"client_id": "env:ML_SANDBOX_SALESFORCE_CLIENT_ID",
                        "client_secret": "env:ML_SANDBOX_SALESFORCE_CLIENT_SECRET"},
        }
    if "adobe_commerce" in urls:
        # One sandbox serves both deployments: PaaS under /rest/<store> (OAuth 1.0a), SaaS under /<tenant> (IMS).
        store = urls["adobe_commerce"].rstrip("/")
        paas = commerce_deployment == "paas"
        entries["commerce"] = {
            "connector": "adobe-commerce",
            "sandbox": True,
            "auth": "integration" if paas else "ims",
            "settings": {"deployment": commerce_deployment, "store_url": store, "store_code": "default",
                         **({} if paas else {"tenant_id": COMMERCE_TENANT_ID,
                                             "ims_token_url": f"{store}/ims/token/v3"})},
            "secrets": ({"consumer_key": "env:ML_SANDBOX_COMMERCE_CONSUMER_KEY",
                         "consumer_secret": "env:ML_SANDBOX_COMMERCE_CONSUMER_SECRET",
                         "access_token": "env:ML_SANDBOX_COMMERCE_ACCESS_TOKEN",
                         "access_token_secret": "env:ML_SANDBOX_COMMERCE_ACCESS_TOKEN_SECRET"} if paas else
                        {"ims_client_id": "env:ML_SANDBOX_COMMERCE_IMS_CLIENT_ID",
                         "ims_client_secret": "env:ML_SANDBOX_COMMERCE_IMS_CLIENT_SECRET"}),
        }
    if "marketo" in urls:
        entries["marketo"] = {
            "connector": "marketo",
            "sandbox": True,
            "settings": {"munchkin_id": "123-ABC-456", "endpoint": urls["marketo"].rstrip("/")},
            "secrets": {"client_id": "env:ML_SANDBOX_MARKETO_CLIENT_ID",
                        "client_secret": "env:ML_SANDBOX_MARKETO_CLIENT_SECRET"},
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
                    state: str = "state/ml-connector.duckdb", overwrite: bool = True,
                    commerce_deployment: str = "paas") -> Path:
    """Write ``workspace.yaml`` for the shipped integrations whose sandboxes are in ``urls`` (QAD <-> Pipedrive,
    QAD <-> Zoho CRM).

    ``overwrite=False``: a workspace.yaml already there is refused (WorkspaceExists), never replaced.
    """
    if not overwrite:
        refuse_to_overwrite(directory, "this command")
    pairs = [pair for crm, pair in PAIRS.items() if crm in urls] or ["qad-pipedrive"]
    if (directory / "connectors").is_dir() and (directory / "mappings" / "qad-pipedrive").is_dir():
        connectors, integrations = "connectors", [f"mappings/{pair}" for pair in pairs]  # `init`'s own copies
    else:  # a checkout's own folders, or the data installed with the package
        specs = shipped_specs()
        connectors, integrations = str(specs / "connectors"), [str(specs / "mappings" / pair) for pair in pairs]
    directory.mkdir(parents=True, exist_ok=True)
    document = {
        "state": state,
        "connectors": [connectors],
        "integrations": integrations,
        "connections": connections(urls, pipedrive_auth, commerce_deployment),
    }
    path = directory / "workspace.yaml"
    path.write_text("# Generated for local sandboxes; secrets are environment references, never values.\n"
                    + yaml.safe_dump(document, sort_keys=False))
    return path
