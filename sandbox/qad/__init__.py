"""QAD Adaptive ERP sandbox: tenant host, token login, QAD-style list and write endpoints."""

from ml_connector.sandbox.qad.app import QadSandbox, create_qad_sandbox, iso_ms, parse_timestamp_ms

__all__ = ["QadSandbox", "create_qad_sandbox", "iso_ms", "parse_timestamp_ms"]
