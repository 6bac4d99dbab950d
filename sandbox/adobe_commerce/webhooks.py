"""The synchronous order-placement webhook (Adobe Commerce Webhooks, facts §1.11).

After each placed order the sandbox POSTs ``{"subject": [], "eventName": "sales_order_place_after", "data":
{"order": {...}}}`` (webhook method ``observer.sales_order_place_after``; the shape of Adobe's documented
``observer.sales_order_place_before`` payload: the Magento event name, no ``observer.`` prefix) to
``webhook_url`` and waits for the answer, as Commerce does: the placement goes on only when the
endpoint answers HTTP 200 with a valid operation (``{"op": "success"}`` or a list of operations). Anything else
(another status, a body that is no operation, ``{"op": "exception"}``, no answer within ``webhook_timeout_ms``)
fails the placement when ``webhook_required`` is true, with the operation's message or the fallback message; an
optional hook only records the failure. ``add``/``replace``/``remove`` operations are accepted and not applied (an
``after`` hook cannot change a placed order's saved data).

Signing (``webhook_signing``): header ``x-adobe-commerce-webhook-signature`` = base64 RSA-SHA256 (PKCS#1 v1.5)
signature over ``base64(body)``, verified with the public key from ``GET /_admin/webhooks/public_key``. The key
pair is made once per sandbox, when first needed (RSA generation costs tens of milliseconds).

The store calls its listeners synchronously, so an order is placed from a worker thread
(``anyio.to_thread.run_sync(store.place_order, ...)``): the delivery then runs on the event loop, which must stay
free to serve a receiver living in the same process. Called with no event loop at all, the delivery runs in a
fresh one; called on the event loop's own thread, it refuses (it would deadlock).
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import anyio.from_thread
import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ml_connector.sandbox.adobe_commerce.store import StoreError

SIGNATURE_HEADER = "x-adobe-commerce-webhook-signature"
FALLBACK_MESSAGE = "Cannot perform the operation due to an error."  # UNVERIFIED default fallbackErrorMessage
OPERATIONS = frozenset({"success", "exception", "add", "replace", "remove"})


def valid_operations(reply: Any) -> list[dict[str, Any]] | None:
    """The operations of a reply, or None when the reply is not one operation or a non-empty list of them."""
    ops = reply if isinstance(reply, list) else [reply]
    if not ops or not all(isinstance(op, dict) and op.get("op") in OPERATIONS for op in ops):
        return None
    return ops


class WebhookSender:
    """Sends the order-placement hook per the sandbox's live config and keeps every delivery for the admin API."""

    def __init__(self, config: Callable[[], Mapping[str, Any]]) -> None:
        self._config = config  # read at each delivery: the sandbox's config is PATCHable
        self._deliveries: list[dict[str, Any]] = []
        self._key: rsa.RSAPrivateKey | None = None
        self._lock = threading.Lock()

    @property
    def config(self) -> Mapping[str, Any]:
        return self._config()

    # -- keys and signatures ----------------------------------------------------------------------------------
    def _private_key(self) -> rsa.RSAPrivateKey:
        with self._lock:
            if self._key is None:
                self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            return self._key

    def public_key_pem(self) -> str:
        return self._private_key().public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    def sign(self, body: bytes) -> str:
        signature = self._private_key().sign(base64.b64encode(body), padding.PKCS1v15(), hashes.SHA256())
        return base64.b64encode(signature).decode()

    # -- deliveries -------------------------------------------------------------------------------------------
    def deliveries(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(d) for d in self._deliveries]

    def _record(self, delivery: dict[str, Any]) -> None:
        with self._lock:
            self._deliveries.append(delivery)

    def __call__(self, event: str, order: dict[str, Any]) -> None:
        """The store listener: deliver synchronously, raising ``StoreError`` when a required hook failed."""
        if not self.config.get("webhook_url"):
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError("a webhook delivery cannot wait on the event loop's own thread: place the order "
                               "through anyio.to_thread.run_sync")
        try:
            anyio.from_thread.run(self.deliver, event, order)
        except anyio.NoEventLoopError:
            asyncio.run(self.deliver(event, order))

    async def deliver(self, event: str, order: dict[str, Any]) -> None:
        url = self.config.get("webhook_url")
        if not url:
            return
        body = json.dumps({"subject": [], "eventName": event, "data": {"order": order}},
                          separators=(",", ":")).encode()
        headers = {"content-type": "application/json"}
        if self.config.get("webhook_signing"):
            headers[SIGNATURE_HEADER] = self.sign(body)
        timeout_ms = self.config.get("webhook_timeout_ms") or 0
        delivery: dict[str, Any] = {"webhook_method": f"observer.{event}", "url": url,
                                    "increment_id": order.get("increment_id"), "status": None, "reply": None,
                                    "ok": False, "error": None}
        started = time.monotonic()
        failure: str | None = None
        try:
            async with httpx.AsyncClient(timeout=timeout_ms / 1000 if timeout_ms else None) as client:
                response = await client.post(url, content=body, headers=headers)
            delivery["status"] = response.status_code
            try:
                delivery["reply"] = response.json()
            except ValueError:
                delivery["reply"] = response.text[:1000]
            failure = self._judge(response.status_code, delivery["reply"])
        except httpx.TimeoutException:
            failure = f"timed out after {timeout_ms} ms"
        except httpx.HTTPError as exc:
            failure = f"{type(exc).__name__}: {exc}"
        delivery["elapsed_ms"] = round((time.monotonic() - started) * 1000, 1)
        delivery["ok"] = failure is None
        delivery["error"] = failure
        self._record(delivery)
        if failure is not None and self.config.get("webhook_required", True):
            raise StoreError(self._message(delivery["reply"]))

    @staticmethod
    def _judge(status: int, reply: Any) -> str | None:
        if status != 200:
            return f"HTTP {status}"
        ops = valid_operations(reply)
        if ops is None:
            return "the reply is not a webhook operation"
        for op in ops:
            if op["op"] == "exception":
                return f"exception: {op.get('message') or ''}".strip()
        return None

    def _message(self, reply: Any) -> str:
        """The exception operation's own message, else the fallback message."""
        ops = valid_operations(reply) or []
        for op in ops:
            if op.get("op") == "exception" and op.get("message"):
                return str(op["message"])
        return str(self.config.get("webhook_fallback_message") or FALLBACK_MESSAGE)
