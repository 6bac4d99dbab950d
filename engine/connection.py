"""A connection: one connector spec bound to the user's settings and secret references."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from ml_connector.config import ConnectorConfig, build
from ml_connector.config.connector import AuthConfig, QuotaConfig
from ml_connector.http.errors import FatalError
from ml_connector.http.redact import REDACTOR
from ml_connector.spec.defaults import definition_defaults


class SecretSource(Mapping[str, str]):
    """Resolves secret references lazily: ``env:NAME`` or ``store:NAME`` (the encrypted credential store)."""

    def __init__(self, connection: str, refs: Mapping[str, str], store: Any) -> None:
        self._connection = connection
        self._refs = dict(refs)
        self._store = store

    def __getitem__(self, name: str) -> str:
        ref = self._refs.get(name)
        if ref is None:
            raise KeyError(name)
        scheme, _, target = ref.partition(":")
        value: str | None
        if scheme == "env":
            value = os.environ.get(target)
            where = f"environment variable {target}"
        elif scheme == "store":
            value = self._store.get(target) if self._store is not None else None
            where = f"credential store entry {target!r}"
        else:
            raise FatalError(f"connection {self._connection}: secret {name!r} must be env:NAME or store:NAME")
        if value is None or value == "":
            raise FatalError(f"connection {self._connection}: secret {name!r}: {where} is not set")
        REDACTOR.add(value)
        return value

    def get(self, name: str, default: Any = None) -> Any:
        try:
            return self[name]
        except KeyError:
            return default

    def __iter__(self) -> Iterator[str]:
        return iter(self._refs)

    def __len__(self) -> int:
        return len(self._refs)


@dataclass
class Connection:
    """Everything needed to call one system for one user."""

    name: str
    connector: ConnectorConfig
    settings: dict[str, Any] = field(default_factory=dict)
    secret_refs: dict[str, str] = field(default_factory=dict)
    auth_name: str | None = None
    quota_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    max_wait: float | None = None  # this account's override of the connector's max_wait
    sandbox: bool = False  # the workspace says this account is a local sandbox (loopback API bases allowed)

    @classmethod
    def from_workspace(cls, name: str, entry: Mapping[str, Any], connector: ConnectorConfig) -> Connection:
        settings = {key: decl.default for key, decl in connector.connection.settings.items()}
        settings.update(entry.get("settings") or {})
        return cls(name, connector, settings, dict(entry.get("secrets") or {}), entry.get("auth"),
                   {pool: dict(values) for pool, values in (entry.get("quotas") or {}).items()},
                   entry.get("max_wait"), entry.get("sandbox") is True)

    def quotas(self) -> dict[str, QuotaConfig]:
        """The connector's quota pools with this account's overrides applied."""
        pools = dict(self.connector.quotas)
        for name, values in self.quota_overrides.items():
            if name not in pools:
                raise FatalError(f"connection {self.name}: quota override for unknown pool {name!r} "
                                 f"(pools: {', '.join(sorted(pools)) or 'none'})")
            given = {item.name: getattr(pools[name], item.name) for item in fields(pools[name])}
            pools[name] = build(QuotaConfig, {**{k: v for k, v in given.items() if v is not None}, **values})
        return pools

    @property
    def unnamed_pool(self) -> QuotaConfig:
        """The pool of calls that name no quota when the connector declares no `default` pool: schema defaults."""
        return build(QuotaConfig, definition_defaults("connector", "quota"))

    @property
    def auth_spec(self) -> tuple[str, AuthConfig]:
        methods = self.connector.auth
        chosen = self.auth_name or next(iter(methods))
        if chosen not in methods:
            raise FatalError(f"connection {self.name}: auth {chosen!r} is not one of {sorted(methods)}")
        return chosen, methods[chosen]

    @property
    def max_wait_seconds(self) -> float:
        """The longest wait a flow sits through: this account's override, else the connector's `max_wait`."""
        return float(self.max_wait) if self.max_wait is not None else self.connector.max_wait

    def context(self, store: Any) -> dict[str, Any]:
        """The names connector templates see: ``connection`` (settings) and ``secrets``."""
        return {"connection": dict(self.settings), "secrets": SecretSource(self.name, self.secret_refs, store)}
