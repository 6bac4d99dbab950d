"""Custom fields a flow writes that the target lacks: created once, before the flow's first write.

A mapping lists them in `ensure_fields` (label -> field type); the target entity's `custom_fields.create` says how
to create one. The catalog decides what is missing, so a field created by an earlier run (or by hand) is never
created again, and a creation whose answer was lost is found there by the next run instead of being repeated.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ml_connector.config.entity import CustomFieldsConfig, FieldCreateConfig
from ml_connector.errors import MlConnectorError
from ml_connector.http.catalog import LazyCatalog
from ml_connector.http.client import ConnectorClient
from ml_connector.http.errors import FatalError


def machine_name(label: str) -> str:
    """A machine name for a label (`Loyalty Tier` -> `loyalty_tier`), for APIs that want one beside the label."""
    return re.sub(r"[^a-z0-9]+", "_", label.casefold()).strip("_")


class FieldEnsurer:
    """Creates the missing custom fields of one flow, at most once per run; in a plan, only names them."""

    def __init__(self, flow: str, wanted: Mapping[str, str], client: ConnectorClient, entity: str,
                 config: CustomFieldsConfig | None, catalog: LazyCatalog | None, *, dry_run: bool) -> None:
        """``wanted``: label -> field type (the mapping's ``ensure_fields``); ``catalog``: the target entity's."""
        self.flow = flow
        self.wanted = dict(wanted)
        self.client = client
        self.entity = entity
        self.config = config
        self.catalog = catalog
        self.dry_run = dry_run
        self._done = not self.wanted

    @property
    def where(self) -> str:
        return f"{self.client.connection.name}.{self.entity}"

    async def ensure(self) -> list[str]:
        """The labels created (in a plan: that would be created) by this call; none after the first call."""
        if self._done:
            return []
        config, lazy = self.config, self.catalog
        if config is None or config.create is None or lazy is None:  # `validate` says so first
            raise FatalError(f"{self.where}: flow {self.flow} has ensure_fields, but the entity declares no "
                             "custom_fields.create")
        catalog = await lazy.get()
        assert catalog is not None  # a declared catalog is always read
        missing = sorted(label for label in self.wanted if label not in catalog.label_to_key)
        if not missing or self.dry_run:
            self._done = True
            return missing
        created = {label: await self._create(config.create, label) for label in missing}
        self._done = True
        lazy.refresh()
        refreshed = await lazy.get()
        assert refreshed is not None
        for label, key in created.items():
            refreshed.add(label, key)  # a catalog endpoint may list a new field late
        return missing

    async def _create(self, create: FieldCreateConfig, label: str) -> str:
        """Create one field; its opaque key from the answer (no key: not confirmed, the flow fails)."""
        context = {**self.client.context,
                   "field": {"label": label, "name": machine_name(label), "type": self.wanted[label]}}
        try:
            reply = await self.client.request(create.method, str(create.path.evaluate(context)),
                                              json=create.body.evaluate(context), idempotent=False)
            key = create.key.evaluate(reply.body)
            if key is None or key == "":
                raise FatalError(f"the answer has no key at {create.key.source}")
        except MlConnectorError as exc:
            raise FatalError(f"{self.where}: could not create custom field {label!r} (needed by flow "
                             f"{self.flow}): {exc}") from exc
        return str(key)

