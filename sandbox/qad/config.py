"""Runtime switches of the QAD sandbox; UNVERIFIED behaviours default to the stricter choice."""

from __future__ import annotations

from typing import Any

DEFAULT_CONFIG: dict[str, Any] = {
    "token_ttl": 3600,  # seconds an access token lives (expires_in)
    "rotate_refresh_token": False,  # refresh grant revokes the old refresh token and issues a new one
    "rate_per_second": 20,  # requests per sliding second per limiter key; 0 disables
    "rate_limit_per": "token",  # "token" (per access token) or "client" (per client_id)
    "max_page_size": 1000,
    "default_page_size": 100,
    "max_batch": 100,  # records per write call
    "reject_unknown_fields": True,  # UNVERIFIED: unknown record fields are business errors
    "enforce_field_lengths": True,  # UNVERIFIED: MFG/PRO-style field widths are enforced on writes
    "enforce_active_references": True,  # orders may not use inactive customers or non-ACTIVE items
    "match_price_tolerance": 0.0,  # three-way match: |invoice unit cost - PO unit cost| allowed per unit
    "allow_over_receipt": False,  # UNVERIFIED: receipts beyond the open PO quantity are refused
    "enforce_line_amounts": True,  # UNVERIFIED: an AR line's amount must be quantity x unitPrice (to the cent)
}

