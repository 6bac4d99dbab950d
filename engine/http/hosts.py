"""Which API base a token response may name: the bearer token and every payload follow it, so it is checked."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import httpx


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _matches(host: str, pattern: str) -> bool:
    """``*.example.com`` matches any host below example.com (not example.com itself); else the exact host."""
    pattern = pattern.lower()
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    return host == pattern


class BaseUrlPolicy:
    """The API bases a connection accepts from a token response.

    Allowed: the configured base URL's own scheme, host and port (nothing moves); https on a host matching one of
    the connector's ``base_url_hosts`` patterns; and, only for a connection the workspace marks as a sandbox, a
    loopback host over http or https.
    """

    def __init__(self, configured_base: str, patterns: Sequence[str], *, sandbox: bool) -> None:
        configured = httpx.URL(configured_base)
        self._configured = (configured.scheme, configured.host, configured.port)
        self._patterns = tuple(patterns)
        self._sandbox = sandbox

    def allows(self, base: str) -> bool:
        try:
            url = httpx.URL(base)
        except httpx.InvalidURL:
            return False
        if url.userinfo or url.scheme not in ("http", "https") or not url.host:
            return False
        if (url.scheme, url.host, url.port) == self._configured:
            return True
        if self._sandbox and _is_loopback(url.host):
            return True
        return url.scheme == "https" and any(_matches(url.host, pattern) for pattern in self._patterns)

    def describe(self) -> str:
        """What is allowed, for the refusal message."""
        parts = [f"https on a host matching {', '.join(self._patterns)}"] if self._patterns else []
        if self._sandbox:
            parts.append("a loopback host (sandbox)")
        parts.append("the configured base URL's host")
        return ", or ".join(parts)
