"""One verified TLS context per CA setting, shared by every client of the process.

httpx builds a context for each client it creates and loads the whole CA bundle into it: ~17 ms of CPU per
connection of every command, for http:// URLs too. A context is safe to share between connections; what makes two
differ here is only where the CA certificates come from (SSL_CERT_FILE / SSL_CERT_DIR, as httpx reads them).
"""

from __future__ import annotations

import os
import ssl
from functools import cache

import httpx


def verified_context() -> ssl.SSLContext:
    """httpx's default verified context (certifi's bundle, or the CA the environment names), built once."""
    return _context(os.environ.get("SSL_CERT_FILE", ""), os.environ.get("SSL_CERT_DIR", ""))


@cache
def _context(cafile: str, capath: str) -> ssl.SSLContext:
    return httpx.create_ssl_context(verify=True, trust_env=True)  # reads the same two variables
