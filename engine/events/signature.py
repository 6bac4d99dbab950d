"""Signed callbacks: a header carrying a signature of the body, checked with a public key the source system shows.

A channel configured by hand in the source system (a static channel) has no token of ours to echo back; a signature
is how its callbacks prove where they come from. The key is a template over the connection's settings and secrets,
rendered and loaded when the channel goes live, so a key that is not a PEM public key stops `serve` at start-up with
one line instead of failing each call. A check is cheap (one RSA verification) and runs on the raw body, before it
is parsed. Only `rsa_sha256` exists; `algorithm` leaves room for others (an HMAC secret would load the same way).
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa

from ml_connector.config.channel import SignatureConfig, SignatureRule, VerifyRule
from ml_connector.errors import MlConnectorError, SetupError

log = logging.getLogger("ml_connector.events")
_KINDS = ((ec.EllipticCurvePublicKey, "an EC"), (ed25519.Ed25519PublicKey, "an Ed25519"),
          (ed448.Ed448PublicKey, "an Ed448"))
MAX_SIGNATURE_CHARS = 4096  # base64 of an RSA-16384 signature is under 3,000 characters: longer is not one


class SignatureRefused(Exception):
    """A callback whose signature is missing or does not verify (the receiver answers 401)."""


@dataclass(frozen=True)
class SignatureCheck:
    """One signature item, its key loaded; `key` None: optional and no key given, so the check is skipped."""

    header: str
    over: str
    key: rsa.RSAPublicKey | None = field(repr=False)

    def check(self, headers: Mapping[str, str], body: bytes) -> None:
        """SignatureRefused unless the header holds a valid signature of the body."""
        if self.key is None:
            return
        sent = (headers.get(self.header) or "").strip()
        if not sent:
            raise SignatureRefused(f"no {self.header} header")
        if len(sent) > MAX_SIGNATURE_CHARS:
            raise SignatureRefused(f"the {self.header} header is too long to be a signature")
        try:
            signature = base64.b64decode(sent, validate=True)
        except (binascii.Error, ValueError):
            raise SignatureRefused(f"the {self.header} header is not base64") from None
        signed = base64.b64encode(body) if self.over == "base64_body" else body
        try:
            self.key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            raise SignatureRefused(f"the {self.header} signature does not verify") from None


def signature_rules(verify: Iterable[VerifyRule | SignatureRule]) -> list[tuple[int, SignatureConfig]]:
    """(index, config) of the signature items of a callback's `verify`."""
    return [(index, rule.signature) for index, rule in enumerate(verify) if isinstance(rule, SignatureRule)]


def prepare_signatures(verify: Iterable[VerifyRule | SignatureRule], context: Mapping[str, Any],
                       label: str) -> tuple[SignatureCheck, ...]:
    """Each signature item's key rendered over the connection's `context` and loaded; SetupError (one line, the
    key never quoted) when a key is not a PEM public key of its algorithm, or is empty and the item not optional."""
    checks = []
    for index, config in signature_rules(verify):
        where = f"channel {label}: callback.verify[{index}].signature.public_key"
        text, unset = _render(config, context, where)
        if not text:
            if not config.optional:
                raise SetupError(f"{where} is empty{f' ({unset})' if unset else ''} (give the key, or mark the "
                                 "item optional: true)")
            log.warning("%s is empty: callbacks are taken without checking %s (optional: true)", where,
                        config.header)
            checks.append(SignatureCheck(config.header, config.over, None))
            continue
        checks.append(SignatureCheck(config.header, config.over, _load(text, config.algorithm, where)))
    return tuple(checks)


def _render(config: SignatureConfig, context: Mapping[str, Any], where: str) -> tuple[str, str | None]:
    """The key's text ("" when it renders empty) and, when a secret it names is not set, why."""
    try:
        value = config.public_key.evaluate(context)
    except MlConnectorError as exc:  # a secret named but not set: as empty (optional may skip it)
        return "", str(exc)
    except Exception as exc:  # a template that fails is a spec error of this channel
        raise SetupError(f"{where}: the template failed: {type(exc).__name__}") from None
    text = "" if value is None else str(value).strip()
    if "\\n" in text and "\n" not in text:  # a PEM kept on one line (an environment variable): lines again
        text = text.replace("\\n", "\n")
    return text, None


def _load(text: str, algorithm: str, where: str) -> rsa.RSAPublicKey:
    try:
        key = serialization.load_pem_public_key(text.encode())
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise SetupError(f"{where} is not a PEM public key (-----BEGIN PUBLIC KEY----- ...)") from None
    if not isinstance(key, rsa.RSAPublicKey):
        kind = next((name for cls, name in _KINDS if isinstance(key, cls)), "another")
        raise SetupError(f"{where} is {kind} key, not an RSA key (algorithm {algorithm})")
    return key
