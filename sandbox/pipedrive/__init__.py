"""Pipedrive sandbox: API v1/v2, token and OAuth2 auth, cursor paging, search, custom-field hashes, rate limits."""

from ml_connector.sandbox.pipedrive.app import PipedriveSandbox, create_pipedrive_sandbox

__all__ = ["PipedriveSandbox", "create_pipedrive_sandbox"]
