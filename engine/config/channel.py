"""Typed channel config: how a source system is asked to call us back (a webhook) when records change.

A connector's `channels` declare, per channel kind, the register / renew / unregister requests (expressions compiled
at load; templates see `channel` and the connection's settings), the lifetimes, and how callbacks are verified and
read. Spec keys and defaults are schema/connector.schema.json's. Durations are written `7d`, `12h`, `30m`, `45s`
(or seconds) and held in seconds.

`CallbackConfig` is the receiver's flat view of a channel's `callback` (see `CallbackDecl.runtime`): the receiver
gets it inside each `ActiveChannel` and never reads the spec.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from ml_connector.config.build import ConfigError
from ml_connector.config.expr import Expr

DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT_SECONDS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(value: Any) -> float:
    """Seconds of a duration (`7d`, `12h`, `30m`, `45s`, or a number); ValueError when it does not parse."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    match = DURATION.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"{value!r} is not a duration (write e.g. 7d, 12h, 30m, 45s)")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


class Duration(float):
    """Seconds, read from a spec's duration (the schema's pattern has already checked it parses)."""

    @classmethod
    def from_spec(cls, value: Any, path: tuple[str | int, ...]) -> Duration:
        """The config builder's hook: `7d` -> 604800.0."""
        try:
            return cls(parse_duration(value))
        except ValueError as exc:
            raise ConfigError(path, str(exc)) from None


@dataclass(frozen=True)
class VerifyRule:
    """A callback field (JMESPath `path`) that must equal a value of the channel (`channel.token` | `channel.id`)."""

    path: str
    equals: str


@dataclass(frozen=True, kw_only=True)
class SignatureConfig:
    """A signature header checked against the body with a public key (`public_key` is a template over the
    connection's settings and secrets, rendered and loaded when the channel goes live: events/signature.py)."""

    header: str
    algorithm: Literal["rsa_sha256"]
    public_key: Expr
    over: Literal["base64_body", "body"]
    optional: bool


@dataclass(frozen=True)
class SignatureRule:
    """A verify item `{signature: {...}}`."""

    signature: SignatureConfig


@dataclass(frozen=True)
class CallbackConfig:
    """How a callback is bounded, verified (all rules, constant-time), read (`ids`, `operation`) and answered."""

    max_bytes: int
    verify: tuple[VerifyRule | SignatureRule, ...]
    ids: str
    operation: str | None
    answer_status: int
    answer_body: Any


@dataclass(frozen=True, kw_only=True)
class AnswerConfig:
    """What a verified callback is answered."""

    status: int
    body: Any = None


@dataclass(frozen=True, kw_only=True)
class CallbackDecl:
    """A channel's `callback` as the spec writes it (JMESPaths checked by validate, compiled by the receiver)."""

    max_bytes: int
    verify: tuple[VerifyRule | SignatureRule, ...]
    ids: str
    operation: str | None = None
    answer: AnswerConfig

    def runtime(self) -> CallbackConfig:
        """The receiver's flat view."""
        return CallbackConfig(max_bytes=self.max_bytes, verify=self.verify, ids=self.ids, operation=self.operation,
                              answer_status=self.answer.status, answer_body=self.answer.body)


@dataclass(frozen=True, kw_only=True)
class ChannelRequest:
    """A register / renew / unregister request: templates, a success test and where the granted expiry is."""

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
    path: Expr
    query: Expr
    body: Expr | None = None
    ok_when: Expr | None = None  # JMESPath over the answer that must be truthy (None: a 2xx answer suffices)
    expiry: Expr | None = None  # JMESPath to the expiry granted (None: the answer names none)


@dataclass(frozen=True, kw_only=True)
class ChannelConfig:
    """A channel kind a system offers (its name is its key in the connector's `channels`); durations in seconds."""

    register: ChannelRequest | None = None  # None: a static channel, configured in the source system by hand
    renew: ChannelRequest | None = None  # None: register again with the same id and token
    unregister: ChannelRequest | None = None
    lifetime: Duration
    default_lifetime: Duration
    renew_before: Duration
    id_kind: Literal["number", "uuid"] = field(metadata={"key": "id"})
    callback: CallbackDecl


@dataclass(frozen=True, kw_only=True)
class EntityEventsConfig:
    """An entity that can be watched: through which channel kind, with which event names."""

    channel: str
    names: tuple[str, ...]
