"""Adobe Commerce sandbox: PaaS (OAuth 1.0a integration, store views in the path) and SaaS (IMS, ``Store`` header)
REST reads with ``searchCriteria``, plus synchronous order webhooks."""

from ml_connector.sandbox.adobe_commerce.app import (
    DEFAULT_CONFIG,
    AdobeCommerceSandbox,
    create_adobe_commerce_sandbox,
)

__all__ = ["DEFAULT_CONFIG", "AdobeCommerceSandbox", "create_adobe_commerce_sandbox"]
