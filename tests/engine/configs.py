"""Typed configs from the concise dict specs tests write, built by the loader's own path (defaults, compile, build).

The runtime reads only typed configs; these helpers let a test keep its few lines of dict spec.
"""

from __future__ import annotations

from typing import Any

from ml_connector.config import ConnectorConfig, MappingConfig
from ml_connector.config.connector import QuotaConfig
from ml_connector.config.entity import EntityConfig
from ml_connector.spec.typed import connector_config, mapping_config

BASE = {"connector": "test", "base_url": "http://test.example",
        "auth": {"key": {"type": "api_key", "header": "x-key", "value": "k-literal"}},
        "entities": {"thing": {"key": "id"}}}


def connector(data: dict[str, Any]) -> ConnectorConfig:
    """A connector spec (`connector`, `base_url` and `auth` may be left out)."""
    return connector_config({**BASE, **data})


def entity(data: dict[str, Any], **connector_parts: Any) -> EntityConfig:
    """One entity spec, read inside a connector with `connector_parts` (paginators, quotas ...)."""
    return connector({**connector_parts, "entities": {"thing": data}}).entities["thing"]


def quota(data: dict[str, Any]) -> QuotaConfig:
    """One quota pool spec."""
    return connector({"quotas": {"pool": data}}).quotas["pool"]


def mapping(data: dict[str, Any]) -> MappingConfig:
    """A mapping spec."""
    return mapping_config(data)


def flow(**parts: Any) -> MappingConfig:
    """A minimal mapping spec `things` (src.thing -> dst.thing, key `id`) with `parts` given or replaced."""
    return mapping_config({"flow": "things", "from": {"connection": "src", "entity": "thing"},
                           "to": {"connection": "dst", "entity": "thing"}, "key": "id", "fields": {"code": "code"},
                           **parts})
