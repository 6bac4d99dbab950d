"""Field catalogs: custom fields keyed by opaque ids in the API, named by their labels in mappings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ml_connector.config.entity import CustomFieldsConfig
from ml_connector.http.bodies import RecordsAt
from ml_connector.http.errors import FatalError
from ml_connector.http.paginators import PageGuard


class LazyCatalog:
    """A catalog read on first use only, so a run with nothing to translate costs no call."""

    def __init__(self, client: Any, entity: str, config: CustomFieldsConfig | None) -> None:
        self.client = client
        self.entity = entity
        self.config = config
        self._catalog: FieldCatalog | None = None

    @property
    def declared(self) -> bool:
        return self.config is not None

    async def get(self) -> FieldCatalog | None:
        if self.config is not None and self._catalog is None:
            self._catalog = await FieldCatalog.load(self.client, self.entity, self.config)
        return self._catalog

    def refresh(self) -> None:
        """Forget the catalog read so far: the next use reads it again (after fields were created)."""
        self._catalog = None


class FieldCatalog:
    """Translates a record's custom-field object between opaque keys (wire) and labels (mappings)."""

    def __init__(self, object_name: str, label_to_key: Mapping[str, str], where: str) -> None:
        self.object = object_name
        self.label_to_key = dict(label_to_key)
        self.key_to_label = {key: label for label, key in label_to_key.items()}
        self.where = where

    @classmethod
    async def load(cls, client: Any, entity: str, config: CustomFieldsConfig) -> FieldCatalog:
        """Read every field definition (all pages) from the catalog endpoint."""
        catalog = config.catalog
        paginator = client.paginator(catalog.paginator)
        path = str(catalog.path.evaluate(client.context))
        where = f"{client.connection.name}.{entity}: GET {path}"
        guard = PageGuard(where, client.connection.connector.limits.max_pages)
        params: dict[str, Any] | None = guard.start({**catalog.params.evaluate(client.context), **paginator.first()})
        label_to_key: dict[str, str] = {}
        while params is not None:
            reply = await client.request("GET", path, params=params, records=RecordsAt(catalog.records),
                                         quota=catalog.quota)
            rows = reply.records or []
            for row in rows:
                label_to_key.setdefault(str(row[catalog.label]), str(row[catalog.key]))
            params = guard.next(paginator.next(params, reply.body, rows), rows)
        return cls(config.object, label_to_key, f"{client.connection.name}.{entity}")

    def add(self, label: str, key: str) -> None:
        """Name a field the catalog endpoint does not list yet (just created; its listing may lag)."""
        if label not in self.label_to_key:
            self.label_to_key[label] = key
            self.key_to_label.setdefault(key, label)

    def to_labels(self, record: dict[str, Any]) -> dict[str, Any]:
        values = record.get(self.object)
        if isinstance(values, dict):
            record[self.object] = {self.key_to_label.get(k, k): v for k, v in values.items()}
        return record

    def to_keys(self, payload: dict[str, Any]) -> dict[str, Any]:
        values = payload.get(self.object)
        if not isinstance(values, dict):
            return payload
        translated: dict[str, Any] = {}
        for name, value in values.items():
            if name in self.label_to_key:
                translated[self.label_to_key[name]] = value
            elif name in self.key_to_label:
                translated[name] = value
            else:
                known = ", ".join(sorted(self.label_to_key)) or "none"
                raise FatalError(f"{self.where}: no custom field labelled {name!r} (known: {known})")
        return {**payload, self.object: translated}
