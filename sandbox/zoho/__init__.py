"""Zoho CRM sandbox: data centers and orgs, OAuth, Records API v8, metadata, credits and concurrency."""

from ml_connector.sandbox.zoho.app import DEFAULT_CONFIG, ZohoSandbox, create_zoho_sandbox, default_orgs

__all__ = ["DEFAULT_CONFIG", "ZohoSandbox", "create_zoho_sandbox", "default_orgs"]
