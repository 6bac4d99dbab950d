"""Salesforce sandbox: OAuth client credentials on My Domain, REST (SOQL, sObjects, collections), limits."""

from ml_connector.sandbox.salesforce.app import DEFAULT_CONFIG, SalesforceSandbox, create_salesforce_sandbox

__all__ = ["DEFAULT_CONFIG", "SalesforceSandbox", "create_salesforce_sandbox"]
