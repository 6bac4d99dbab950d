"""The typed spec model: one loaded spec file, and the project of all specs loaded together."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ml_connector.config import ConnectorConfig, Expr, MappingConfig
from ml_connector.spec.graph import topological_order
from ml_connector.spec.problems import JsonPath
from ml_connector.spec.yamlload import SourceMap

SpecKind = Literal["connector", "mapping", "integration", "workspace"]


@dataclass
class Spec:
    """One spec file: its kind, name (connector / flow / integration name), data and line map.

    `data` is the file as written (what the line map describes); `normalised` has the schema's defaults filled
    in; `expressions` holds every tagged expression compiled, by path; `config` is the typed config of a
    connector or mapping spec, built when the file has no problem of its own (else None).
    """

    kind: SpecKind
    name: str
    path: Path
    data: dict[str, Any]
    source: SourceMap
    normalised: dict[str, Any] = field(default_factory=dict)
    expressions: dict[JsonPath, Expr] = field(default_factory=dict)
    config: ConnectorConfig | MappingConfig | None = None
    checked_alone: bool = False  # the checks of this file on its own ran at load (spec/loader.py) and found nothing

    def line_of(self, path: JsonPath) -> int:
        """Line of a field of this spec (see `SourceMap.line_of`)."""
        return self.source.line_of(path)


@dataclass
class Project:
    """Everything loaded together: connectors, integrations and flows by name, and an optional workspace."""

    connectors: dict[str, Spec]
    integrations: dict[str, Spec]
    flows: dict[str, Spec]
    flow_integration: dict[str, str]
    workspace: Spec | None = None
    files: list[Path] = field(default_factory=list)

    def connector(self, name: str) -> Spec:
        """The connector spec named `name` (KeyError if none is loaded)."""
        try:
            return self.connectors[name]
        except KeyError:
            raise KeyError(f"unknown connector {name!r}") from None

    def entity(self, connector_name: str, entity_name: str) -> dict[str, Any]:
        """An entity of a connector (KeyError if either is unknown)."""
        entities = self.connector(connector_name).data.get("entities") or {}
        if entity_name not in entities:
            raise KeyError(f"connector {connector_name!r} has no entity {entity_name!r}")
        entity: dict[str, Any] = entities[entity_name]
        return entity

    def flow_connector(self, flow_name: str, side: Literal["from", "to"]) -> str:
        """The connector name behind a flow's `from` or `to` connection, via the flow's integration."""
        flow = self.flows[flow_name]
        integration = self.integrations[self.flow_integration[flow_name]]
        connection = flow.data[side]["connection"]
        connector: str = integration.data["connections"][connection]["connector"]
        return connector

    def flow_order(self, flow_names: list[str] | None = None) -> list[str]:
        """Flows in run order: after their `depends_on`, ties in the order the integrations list them.

        With `flow_names`, only those flows are ordered (dependencies outside them are ignored).
        Raises ValueError on a dependency cycle.
        """
        names = list(self.flows)
        if flow_names is not None:
            unknown = [name for name in flow_names if name not in self.flows]
            if unknown:
                raise KeyError(f"unknown flow(s): {', '.join(unknown)}")
            wanted = set(flow_names)
            names = [name for name in names if name in wanted]
        depends = {name: _names(self.flows[name].data.get("depends_on")) for name in names}
        return topological_order(names, depends)


def _names(value: Any) -> list[str]:
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []
