"""Zoho CRM sandbox."""
