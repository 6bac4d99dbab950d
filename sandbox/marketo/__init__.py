"""Marketo Engage sandbox: identity, REST envelope and limits, lead database objects, activities, bulk extract."""

from ml_connector.sandbox.marketo.app import DEFAULT_CONFIG, MarketoSandbox, create_marketo_sandbox

__all__ = ["DEFAULT_CONFIG", "MarketoSandbox", "create_marketo_sandbox"]
