"""Specs load into typed, normalised configs: schema defaults filled in, expressions compiled by the runtime."""

from __future__ import annotations

import dataclasses
import inspect
import json
import types
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import pytest

import ml_connector.config.connector
import ml_connector.config.entity
import ml_connector.config.mapping
import ml_connector.spec.typed
from ml_connector.config import ConnectorConfig, Expr, MappingConfig
from ml_connector.config.build import spec_key
from ml_connector.spec import SCHEMA_DIR, Spec, load_schema, load_specs
from ml_connector.spec.schemawalk import schema_walk
from ml_connector.spec.typed import typed_config
from tests.spec.conftest import REPO

# Two connectors and two mappings that leave out every key the schemas give a default: the bare ones leave out
# whole optional sections, the full ones give the sections and leave out the defaulted keys inside them.
BARE_CONNECTOR = """\
connector: bare
base_url: https://api.example.com
auth:
  key: {type: api_key, header: X-Key, value: "{{ secrets.key }}"}
entities:
  thing: {key: id}
"""
FULL_CONNECTOR = """\
connector: full
connection:
  settings: {region: {description: Region}}
  secrets: {key: {description: Key}}
base_url: "https://{{ connection.region }}.example.com"
auth:
  oauth: {type: oauth2, grant: client_credentials, token_url: /token, client_id: "{{ secrets.key }}"}
  session: {type: session, login: {url: /login}, token: token, header: {Authorization: "Bearer {{ token }}"}}
  signed: {type: oauth1, consumer_key: "{{ secrets.key }}", consumer_secret: "{{ secrets.key }}",
           token: "{{ secrets.key }}", token_secret: "{{ secrets.key }}"}
responses:
  - {when: {status: 500}, do: retry}
quotas:
  default: {calls: 10, window: 1}
ping:
  - {name: sync, path: /sync, fails_when: data.on, message: "owned by another sync"}
paginators:
  pages: {type: page, param: page, limit: {param: size, max: 100}}
  after: {type: cursor, param: after, next: next, limit: {param: limit, max: 100}}
  offset: {type: offset, param: start, limit: {param: limit, max: 100}}
channels:
  changes: {register: {path: /watch}}
  pushes: {register: {path: /hooks, body: {url: "{{ channel.url }}"}}, callback: {answer: {body: {ok: true}}}}
  signed: {callback: {verify: [{signature: {header: x-sig, algorithm: rsa_sha256, public_key: "{{ secrets.key }}"}}]}}
streams:
  changes: {protocol: grpc_pubsub, proto: protos.v1.api, target: "{{ connection.region }}:443",
            topic: "/t/{{ stream.entity }}", invalid_replay: replay.bad, origin: {path: origin}}
entities:
  thing:
    key: id
    fields: {id: {type: integer}, updated: {type: datetime}}
    custom_fields: {object: custom, catalog: {path: /fields, key: key, label: name}}
    read: {path: /things, incremental: {field: updated}}
    get: {path: "/things/{{ id }}"}
    expand:
      parts: {path: /parts, parent_key: thing_id}
    write:
      strategy: search_then_write
      search: {path: /things/search}
      create: {method: POST, path: /things, batch: {size: 10, body: {things: "{{ records }}"}},
              results: {items: saved, key: code}}
      update: {method: PATCH, path: "/things/{{ target_id }}"}
      prefetch: {}
      delete: {path: "/things/{{ target_id }}"}
    deletes: {read: {path: /gone, key: id, incremental: {param: since, field: at}}, absent: {}}
    events: {channel: changes, names: [things.all]}
  bulked:
    key: id
    read:
      path: /bulked
      bulk:
        create: {path: /jobs, id: id}
        start: {path: "/jobs/{{ job.id }}/start"}
        poll: {path: "/jobs/{{ job.id }}", state: state, done: [done]}
        download: {path: "/jobs/{{ job.id }}/file", next: {header: X-Next, param: locator}}
        abort: {path: "/jobs/{{ job.id }}/abort"}
        windows: {days: 31}
  linked:
    key: id
    write:
      strategy: update_only
      update: {method: PATCH, path: /linked}
      then: [{name: link, method: PUT, path: /link}]
"""
BARE_MAPPING = """\
flow: bare
from: {connection: a, entity: thing}
to: {connection: b, entity: thing}
key: id
fields: {name: name}
"""
FULL_MAPPING = BARE_MAPPING.replace("flow: bare", "flow: full").replace(
    "from: {connection: a, entity: thing}", "from: {connection: a, entity: thing, keys: {flow: bare}}") + """\
match: {target: name}
examples:
  - {in: {id: 1}, out: {name: 1}}
"""


@pytest.fixture
def fixtures(tmp_path: Path) -> dict[str, Spec]:
    for name, text in [("bare.yaml", BARE_CONNECTOR), ("full.yaml", FULL_CONNECTOR),
                       ("bare_flow.yaml", BARE_MAPPING), ("full_flow.yaml", FULL_MAPPING)]:
        (tmp_path / name).write_text(text)
    project, problems = load_specs([tmp_path])
    assert [str(p) for p in problems] == []
    return {**project.connectors, **{f"{name}_flow": spec for name, spec in project.flows.items()}}


def schema_defaults(kind: str) -> dict[tuple[int, str], str]:
    """Every `default` written in a schema: (id of the schema object, property) -> where it is, for messages."""
    found: dict[tuple[int, str], str] = {}

    def scan(node: Any, pointer: str) -> None:
        if isinstance(node, dict):
            properties = node.get("properties")
            for name, sub in (properties or {}).items() if isinstance(properties, dict) else ():
                if isinstance(sub, dict) and "default" in sub:
                    found[(id(node), name)] = f"{kind}:{pointer}/properties/{name}"
            for key, value in node.items():
                scan(value, f"{pointer}/{key}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                scan(value, f"{pointer}/{index}")

    scan(load_schema(kind), "#")
    return found


def config_at(config: Any, path: tuple[str | int, ...]) -> Any:
    """The part of a typed config that a path into the spec document names."""
    for part in path:
        if isinstance(config, (Mapping, tuple)):
            config = config[part]  # type: ignore[index]
        else:
            config = getattr(config, field_for(config, str(part)).name)
    return config


def field_for(config: Any, key: str) -> dataclasses.Field[Any]:
    return next(f for f in dataclasses.fields(config) if spec_key(f.name, f.metadata) == key)


def plain(value: Any) -> Any:
    """A config value as the spec writes it: expressions by their source, tuples as lists."""
    if isinstance(value, Expr):
        return value.source
    if isinstance(value, tuple):
        return [plain(item) for item in value]
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    return value


def defaulted(spec: Spec) -> Iterator[tuple[tuple[int, str], tuple[str | int, ...], str, Any]]:
    """(schema default, path of the object, key, default) for each default the loader filled into `spec`."""
    for path, schema, value in schema_walk(spec.kind).nodes(spec.normalised):
        raw = config_path_in(spec.data, path)
        for key, sub in schema.get("properties", {}).items():
            if isinstance(value, dict) and isinstance(sub, dict) and "default" in sub and key not in raw:
                yield (id(schema), key), path, key, sub["default"]


def config_path_in(data: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        data = data.get(part, {}) if isinstance(data, dict) else data[int(part)] if isinstance(data, list) else {}
    return data


@pytest.mark.parametrize("kind", ["connector", "mapping"])
def test_every_schema_default_reaches_the_typed_config(kind: str, fixtures: dict[str, Spec]) -> None:
    expected = schema_defaults(kind)
    assert len(expected) >= (25 if kind == "connector" else 6)  # the test reads real defaults, not none
    covered = set()
    for spec in (s for s in fixtures.values() if s.kind == kind):
        config = typed_config(spec)  # what the loader built, or the ConfigError saying why it could not
        assert spec.config == config
        for where, path, key, default in defaulted(spec):
            owner = config_at(config, path)
            value = getattr(owner, field_for(owner, key).name)
            if dataclasses.is_dataclass(value) and not isinstance(value, Expr):
                assert default == {}, expected[where]  # a defaulted section: its own defaults are checked below
            else:
                assert plain(value) == default, expected[where]
            covered.add(where)
    assert sorted(expected[w] for w in set(expected) - covered) == []  # every schema default was exercised


def test_config_fields_default_only_to_none() -> None:
    """A config field that may be absent is None; every other default is written once, in the JSON Schema."""
    modules = [ml_connector.config.connector, ml_connector.config.entity, ml_connector.config.mapping]
    classes: list[type] = [c for m in modules for _, c in inspect.getmembers(m, inspect.isclass)
                           if dataclasses.is_dataclass(c) and c.__module__ == m.__name__]
    assert len(classes) >= 30
    for cls in classes:
        for item in dataclasses.fields(cls):
            assert item.default_factory is dataclasses.MISSING, f"{cls.__name__}.{item.name}"
            assert item.default in (None, dataclasses.MISSING), f"{cls.__name__}.{item.name}"


def test_expression_tags_are_known_kinds() -> None:
    for kind in ("connector", "mapping", "integration", "workspace"):
        text = (SCHEMA_DIR / f"{kind}.schema.json").read_text()
        tags = [json.loads(f'"{t}"') for t in _tag_values(text)]
        assert set(tags) <= {"jmespath", "template", "mapping", "path"}, kind
    assert len(_tag_values((SCHEMA_DIR / "connector.schema.json").read_text())) >= 40


def _tag_values(text: str) -> list[str]:
    import re

    return re.findall(r'"x-expression": "([^"]*)"', text)


def test_shipped_specs_have_typed_configs() -> None:
    project, problems = load_specs([REPO / "connectors", REPO / "mappings"])
    assert problems == []
    qad = typed_config(project.connectors["qad"])
    assert isinstance(qad, ConnectorConfig) and project.connectors["qad"].config == qad
    order = qad.entities["sales_order"]
    assert order.write is not None and order.write.update is not None and order.write.create is not None
    assert order.write.update.fetch_existing is True and order.write.create.fetch_existing is False
    assert order.write.update.batch is not None and order.write.update.batch.size == 100
    assert order.get is not None
    assert order.get.path.evaluate({"id": "SO/1 ..", "connection": {}}) == "/api/erp/salesOrders/SO%2F1%20.."
    assert order.get.record.evaluate({"data": [{"salesOrderNumber": "SO1"}]}) == {"salesOrderNumber": "SO1"}
    assert qad.base_url.evaluate({"connection": {"tenant_url": "https://t.example"}}) == "https://t.example/clouderp"
    for spec in [*project.connectors.values(), *project.flows.values()]:
        assert spec.config == typed_config(spec)
    items = project.flows["items_to_products"].config
    assert isinstance(items, MappingConfig) and items.source.entity == "item" and items.target.entity == "product"


def test_a_spec_with_a_problem_gets_no_config(tmp_path: Path) -> None:
    (tmp_path / "bare.yaml").write_text(BARE_CONNECTOR.replace("{{ secrets.key }}", "{{ secrets.key | nope }}"))
    project, problems = load_specs([tmp_path])
    assert [p.field for p in problems] == ["auth.key.value"]
    assert project.connectors["bare"].config is None


@pytest.mark.parametrize(("kind", "config"), [("connector", ConnectorConfig), ("mapping", MappingConfig)])
def test_configs_model_exactly_the_schema(kind: str, config: type) -> None:
    """Schema and config classes side by side: the same keys, expressions exactly where the schema tags them."""
    schema = load_schema(kind)
    checked = SchemaModel(schema).check(schema, config, kind)
    assert checked >= (100 if kind == "connector" else 30)


class SchemaModel:
    """Walks a schema and a config type together, asserting that they describe the same document."""

    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root
        self.seen: set[tuple[int, str]] = set()  # the schema is recursive (child lists)

    def check(self, node: Any, kind: Any, where: str) -> int:
        node = self.resolve(node)
        if (id(node), repr(kind)) in self.seen:
            return 0
        self.seen.add((id(node), repr(kind)))
        options = [o for o in get_args(kind) if o is not type(None)] if _is_union(kind) else [kind]
        if self.tagged(node):
            assert options == [Expr], f"{where}: tagged x-expression, modelled as {kind}"
            return 1
        assert Expr not in options or len(options) > 1, f"{where}: an Expr the schema does not tag"
        classes = [o for o in options if _is_config_class(o)]
        if len(options) > 1 and (classes or Expr in options):
            return sum(self.check_branch(node, branch, options, where) for branch in self.branches(node))
        if classes:
            properties = self.properties(node)
            for branch in self.branches(node):
                properties.update(self.properties(branch))
            return self.check_class(classes[0], properties, where)
        origin = get_origin(options[0])
        if origin is Literal:
            allowed = node.get("enum", [node["const"]] if "const" in node else None)
            assert allowed is not None and sorted(get_args(options[0])) == sorted(allowed), f"{where}: {allowed}"
        if origin is Mapping and "additionalProperties" in node:
            return self.check(node["additionalProperties"], get_args(options[0])[1], f"{where}.*")
        if origin is tuple and "items" in node:
            return self.check(node["items"], get_args(options[0])[0], f"{where}[]")
        return 1

    def check_branch(self, node: Any, branch: Any, options: list[Any], where: str) -> int:
        branch = self.resolve(branch)
        if self.tagged(branch):
            assert Expr in options, f"{where}: a tagged branch without an Expr option"
            return 1
        constant = self.properties(branch).get("type", {}).get("const")
        matching = [o for o in options if _is_config_class(o)
                    and (constant is None or constant in get_args(get_type_hints(o).get("type")))]
        if constant is None and len(matching) > 1:  # branches without a `type`: told apart by their keys
            keys = set(self.properties(node)) | set(self.properties(branch))
            matching = [o for o in matching if {spec_key(f.name, f.metadata) for f in dataclasses.fields(o)} == keys]
        assert len(matching) == 1, f"{where}: {constant!r} matches {matching}"
        return self.check_class(matching[0], {**self.properties(node), **self.properties(branch)}, where)

    def check_class(self, cls: Any, properties: dict[str, Any], where: str) -> int:
        hints = get_type_hints(cls)
        keys = {spec_key(f.name, f.metadata): f.name for f in dataclasses.fields(cls)}
        assert sorted(properties) == sorted(keys), f"{where}: schema keys vs {cls.__name__}"
        return 1 + sum(self.check(sub, hints[keys[name]], f"{where}.{name}") for name, sub in properties.items())

    def properties(self, node: Any) -> dict[str, Any]:
        """The properties a node declares itself and through `$ref` and `allOf` (not conditional branches)."""
        node = self.resolve(node)
        found = dict(node.get("properties", {}))
        for sub in node.get("allOf", []):
            found.update(self.properties(sub))
        return found

    def branches(self, node: Any) -> list[Any]:
        """The `then` / `else` subschemas of a node and of its `allOf` members."""
        node = self.resolve(node)
        found = [node[key] for key in ("then", "else") if key in node]
        for sub in node.get("allOf", []):
            found += self.branches(sub)
        return found

    def tagged(self, node: Any) -> bool:
        return "x-expression" in node

    def resolve(self, node: Any) -> Any:
        while isinstance(node, dict) and "$ref" in node:
            node = self.root["$defs"][node["$ref"].rsplit("/", 1)[1]]
        return node if isinstance(node, dict) else {}


def _is_config_class(kind: Any) -> bool:
    return dataclasses.is_dataclass(kind) and kind is not Expr


def _is_union(kind: Any) -> bool:
    return get_origin(kind) in (Union, types.UnionType)


def test_a_spec_the_config_cannot_model_is_a_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Schema accepts it, the config classes do not: a located validate problem, never a silent `config = None`."""

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Narrow:
        connector: str

    monkeypatch.setitem(ml_connector.spec.typed.CONFIGS, "connector", Narrow)
    (tmp_path / "bare.yaml").write_text(BARE_CONNECTOR)
    project, problems = load_specs([tmp_path])
    assert [str(p).split(": ", 1)[1] for p in problems] == [
        "base_url: the engine cannot model this spec (not modelled by Narrow); please report it"
    ]
    assert problems[0].line == 2
    assert project.connectors["bare"].config is None


# The runtime; engine/transform/expressions.py is the compiler the loader uses.
RUNTIME = [REPO / "engine" / "http", REPO / "engine" / "sync", REPO / "engine" / "transform" / "mapping.py",
           REPO / "engine" / "transform" / "examples.py", REPO / "engine" / "connection.py"]


def runtime_sources() -> Iterator[tuple[Path, str]]:
    for root in RUNTIME:
        for path in sorted(root.rglob("*.py")) if root.is_dir() else [root]:
            yield path, path.read_text()


def test_the_runtime_keeps_no_second_default_and_compiles_nothing() -> None:
    """Defaults live in the schema and expressions are compiled at load: the runtime reads the typed config only."""
    import re

    keys: set[str] = set()

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            keys.update(k for k in (node.get("properties") or {}) if isinstance(node.get("properties"), dict))
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(load_schema("connector"))
    collect(load_schema("mapping"))
    defaults = [f"{path.name}: {key}" for path, text in runtime_sources()
                for key in re.findall(r'\.get\("([a-z_]+)", ', text) if key in keys]
    assert defaults == []
    compiling = [f"{path.name}: {found}" for path, text in runtime_sources()
                 for found in re.findall(r"jmespath\.compile|compile_(?:template|expression|path)\(|TemplateTree\(",
                                         text)]
    assert compiling == []


def test_an_expansion_of_several_parents_per_call_names_their_key() -> None:
    from ml_connector.spec import SpecError
    from ml_connector.spec.typed import connector_config

    base = {"connector": "c", "base_url": "https://c.example",
            "auth": {"k": {"type": "api_key", "header": "x-k", "value": "v"}}}
    one = {"key": "id", "expand": {"lines": {"path": "/things/{{ id }}/lines"}}}
    assert connector_config({**base, "entities": {"thing": one}}).entities["thing"].expand["lines"].parent_key is None
    several = {"key": "id", "expand": {"lines": {"path": "/lines", "batch": 50}}}
    with pytest.raises(SpecError, match="missing required key 'parent_key'"):
        connector_config({**base, "entities": {"thing": several}})


def test_a_batch_says_how_its_body_carries_the_records() -> None:
    from ml_connector.spec import SpecError
    from ml_connector.spec.typed import connector_config

    create = {"method": "POST", "path": "/things", "batch": {"size": 10}, "results": {"items": "saved", "key": "code"}}
    spec = {"connector": "c", "base_url": "https://c.example",
            "auth": {"k": {"type": "api_key", "header": "x-k", "value": "v"}},
            "entities": {"thing": {"key": "id", "write": {"strategy": "create_only", "create": create}}}}
    with pytest.raises(SpecError, match="create.batch: missing required key 'body'"):
        connector_config(spec)
