"""Data centers: each has an accounts host and an API host, and a request's Host picks its DC (facts §1.1).

The sandbox's hosts differ per DC (loopback addresses by default) so that a client which hard-codes one DC's
host, or ignores the token response's ``api_domain``, fails as it would against Zoho.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

DEFAULT_DATA_CENTERS: dict[str, dict[str, str]] = {
    "us": {"accounts": "127.0.0.1", "api": "127.0.0.1"},
    "eu": {"accounts": "127.0.0.2", "api": "127.0.0.2"},
    "in": {"accounts": "127.0.0.3", "api": "127.0.0.3"},
}


@dataclass(frozen=True)
class DataCenter:
    name: str
    accounts_host: str
    api_host: str


def data_centers(config: dict[str, Any]) -> dict[str, DataCenter]:
    """The DCs from ``config["data_centers"]`` ({"us": {"accounts": host, "api": host}, ...})."""
    table = config.get("data_centers") or DEFAULT_DATA_CENTERS
    return {name: DataCenter(name, hosts["accounts"], hosts["api"]) for name, hosts in table.items()}


def hostname(request: Request) -> str:
    """The request's Host without its port (``[::1]:80`` -> ``::1``)."""
    host = request.headers.get("host") or (request.url.hostname or "")
    if host.startswith("["):
        return host[1:host.index("]")] if "]" in host else host[1:]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def port_suffix(request: Request) -> str:
    """``:port`` of the request's Host, or "" (a token's api_domain keeps the port the client used)."""
    host = request.headers.get("host") or ""
    tail = host.rsplit("]", 1)[-1] if host.startswith("[") else host
    return f":{tail.rsplit(':', 1)[1]}" if ":" in tail else ""


def api_dc(dcs: dict[str, DataCenter], host: str) -> DataCenter | None:
    return next((dc for dc in dcs.values() if dc.api_host == host), None)


def accounts_dc(dcs: dict[str, DataCenter], host: str) -> DataCenter | None:
    return next((dc for dc in dcs.values() if dc.accounts_host == host), None)


def all_hosts(dcs: dict[str, DataCenter]) -> list[str]:
    return list(dict.fromkeys(h for dc in dcs.values() for h in (dc.accounts_host, dc.api_host)))
