"""Issue 24 (start-up cost): a spec file that loaded without a problem is read back from a cache by its text.

Every command loads the whole workspace (YAML with line maps, schema checks, expressions compiled): about a second
for the shipped connectors, more than a small run's work. The cache must never change what a load finds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import ml_connector.spec.loader as loader
from ml_connector.sandbox.workspace import SANDBOX_ENV, write_workspace
from ml_connector.spec import load_specs
from ml_connector.spec.cache import ENV, SpecCache
from ml_connector.spec.schemawalk import SchemaWalk
from ml_connector.spec.yamlload import DEFAULT_LIMITS, YamlLimits

URLS = {"qad": "http://127.0.0.1:1/qad", "pipedrive": "http://127.0.0.1:1/pd"}
REPO = Path(__file__).resolve().parents[2]


def write_copy(directory: Path) -> Path:
    """The QAD <-> Pipedrive workspace over copies of the shipped specs (a test may edit them)."""
    shutil.copytree(REPO / "connectors", directory / "connectors")
    shutil.copytree(REPO / "mappings" / "qad-pipedrive", directory / "mappings" / "qad-pipedrive")
    workspace = write_workspace(directory, URLS)
    document = yaml.safe_load(workspace.read_text())
    document.update(connectors=[str(directory / "connectors")],
                    integrations=[str(directory / "mappings" / "qad-pipedrive")])
    workspace.write_text(yaml.safe_dump(document))
    return workspace


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(ENV, str(tmp_path / "cache"))
    return tmp_path / "cache" / "specs"


@pytest.fixture
def parsed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files the loader parsed as YAML (a cache hit parses nothing)."""
    files: list[str] = []
    real = loader.parse_yaml

    def spy(text: str, file: str, limits: YamlLimits = DEFAULT_LIMITS) -> object:
        files.append(Path(file).name)
        return real(text, file, limits)

    monkeypatch.setattr(loader, "parse_yaml", spy)
    return files


def test_a_second_load_reads_every_file_from_the_cache_and_builds_the_same_project(
        tmp_path: Path, cache_dir: Path, parsed: list[str]) -> None:
    workspace = write_copy(tmp_path / "ws")
    first, problems = load_specs([], workspace=workspace)
    assert problems == [] and len(parsed) == len(first.files) > 10
    parsed.clear()

    second, problems = load_specs([], workspace=workspace)

    assert problems == [] and parsed == []
    assert {n: c.config for n, c in second.connectors.items()} == {n: c.config for n, c in first.connectors.items()}
    assert {n: f.config for n, f in second.flows.items()} == {n: f.config for n, f in first.flows.items()}
    assert second.flows["items_to_products"].source.line_of(("fields",)) == \
        first.flows["items_to_products"].source.line_of(("fields",))


def test_an_expression_read_back_compiles_on_first_use_and_evaluates_the_same(tmp_path: Path,
                                                                               cache_dir: Path) -> None:
    workspace = write_copy(tmp_path / "ws")
    first, _ = load_specs([], workspace=workspace)
    second, _ = load_specs([], workspace=workspace)
    record = {"code": "10-100", "description": "Widget", "unitOfMeasure": "EA", "listPrice": 12.5,
              "currency": "EUR", "active": True}

    for path, expr in first.flows["items_to_products"].expressions.items():
        again = second.flows["items_to_products"].expressions[path]
        assert again._compiled is not expr._compiled  # not compiled at load
        try:
            expected: object = expr.evaluate(record)
        except Exception as exc:  # noqa: BLE001 - the same failure is what is compared
            expected = type(exc)
        try:
            got: object = again.evaluate(record)
        except Exception as exc:  # noqa: BLE001
            got = type(exc)
        assert got == expected, path


def test_a_file_with_a_problem_is_never_cached_and_is_reported_on_every_load(tmp_path: Path, cache_dir: Path,
                                                                             parsed: list[str]) -> None:
    workspace = write_copy(tmp_path / "ws")
    flow = tmp_path / "ws" / "mappings" / "qad-pipedrive" / "items_to_products.yaml"
    flow.write_text(flow.read_text().replace("flow: items_to_products", "flow: items_to_products\nbogus: 1"))

    for _ in range(2):
        parsed.clear()
        _, problems = load_specs([], workspace=workspace)
        assert [(Path(p.file).name, p.line, p.field) for p in problems] == [("items_to_products.yaml", 3, "bogus")]
        assert parsed.count("items_to_products.yaml") == 1


def test_an_edited_file_is_loaded_again(tmp_path: Path, cache_dir: Path, parsed: list[str]) -> None:
    workspace = write_copy(tmp_path / "ws")
    load_specs([], workspace=workspace)
    flow = tmp_path / "ws" / "mappings" / "qad-pipedrive" / "items_to_products.yaml"
    flow.write_text(flow.read_text() + "\n# edited\n")
    parsed.clear()

    _, problems = load_specs([], workspace=workspace)

    assert problems == [] and parsed == ["items_to_products.yaml"]


def test_a_damaged_entry_is_ignored_and_the_file_loaded(tmp_path: Path, cache_dir: Path, parsed: list[str]) -> None:
    workspace = write_copy(tmp_path / "ws")
    first, _ = load_specs([], workspace=workspace)
    for entry in cache_dir.iterdir():
        entry.write_text('{"data": ')
    parsed.clear()

    second, problems = load_specs([], workspace=workspace)

    assert problems == [] and len(parsed) == len(first.files)
    assert {n: f.config for n, f in second.flows.items()} == {n: f.config for n, f in first.flows.items()}


@pytest.mark.parametrize("damage", ["an expression where the data has none", "an unknown expression kind",
                                    "defaulted data that is not an object"])
def test_an_entry_that_does_not_fit_together_is_ignored_and_the_file_loaded(
        tmp_path: Path, cache_dir: Path, parsed: list[str], damage: str) -> None:
    """The entry's parts are checked against each other before use: a wrong one is a reload, never a crash."""
    workspace = write_copy(tmp_path / "ws")
    first, _ = load_specs([], workspace=workspace)
    for entry in cache_dir.iterdir():
        document = json.loads(entry.read_text())
        if damage == "an expression where the data has none":
            document["expressions"].append([["fields", "no such field", 3], "jmespath"])
        elif damage == "an unknown expression kind":
            document["expressions"].append([[], "python"])
        else:
            document["normalised"] = ["not", "an", "object"]
        entry.write_text(json.dumps(document))
    parsed.clear()

    second, problems = load_specs([], workspace=workspace)

    assert problems == [] and len(parsed) == len(first.files)
    assert {n: f.config for n, f in second.flows.items()} == {n: f.config for n, f in first.flows.items()}


def test_a_file_cached_under_looser_limits_is_still_refused_under_tighter_ones(tmp_path: Path,
                                                                               cache_dir: Path) -> None:
    workspace = write_copy(tmp_path / "ws")
    assert load_specs([], workspace=workspace)[1] == []

    _, problems = load_specs([], workspace=workspace, limits=YamlLimits(max_nodes=50))

    assert problems and all("nodes" in p.message for p in problems)


def test_off_keeps_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parsed: list[str]) -> None:
    monkeypatch.setenv(ENV, "off")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    workspace = write_copy(tmp_path / "ws")
    load_specs([], workspace=workspace)
    parsed.clear()

    load_specs([], workspace=workspace)

    assert SpecCache.default().directory is None
    assert len(parsed) > 10 and not (tmp_path / "xdg").exists() and not (tmp_path / "home").exists()


def test_a_cache_that_cannot_be_written_is_no_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv(ENV, str(blocker))
    workspace = write_copy(tmp_path / "ws")

    assert load_specs([], workspace=workspace)[1] == []
    assert load_specs([], workspace=workspace)[1] == []


def test_a_file_read_back_is_typed_without_walking_its_schema_again(tmp_path: Path, cache_dir: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Filling defaults and finding expressions walk the schema over every value: most of a cached load's CPU
    (about 0.2 s of every command's start-up for the shipped specs). Both are kept with the entry."""
    workspace = write_copy(tmp_path / "ws")
    first, _ = load_specs([], workspace=workspace)
    walked: list[object] = []
    real = SchemaWalk.nodes

    def counted(self: SchemaWalk, instance: object) -> object:
        walked.append(instance)
        return real(self, instance)

    monkeypatch.setattr(SchemaWalk, "nodes", counted)

    second, problems = load_specs([], workspace=workspace)

    assert problems == [] and walked == []
    for name, spec in [*first.connectors.items(), *first.flows.items(), *first.integrations.items()]:
        again = {**second.connectors, **second.flows, **second.integrations}[name]
        assert again.normalised == spec.normalised, name
        assert {path: (e.kind, e.source) for path, e in again.expressions.items()} == \
            {path: (e.kind, e.source) for path, e in spec.expressions.items()}, name
        assert again.config == spec.config, name


def test_a_command_whose_files_are_all_cached_never_imports_the_schema_validator(tmp_path: Path,
                                                                                  cache_dir: Path) -> None:
    """jsonschema (with referencing and attrs) is ~40 ms of every command's imports; with every file cached nothing
    is validated, so nothing needs it: not the load, not the connections' clients and pools."""
    workspace = write_copy(tmp_path / "ws")
    load_specs([], workspace=workspace)  # fills the cache
    code = ("import sys; import ml_connector.cli; from ml_connector.workspace import Workspace; "
            "from ml_connector.sync.runner import Runner; "
            f"w = Workspace.open({str(workspace)!r}); r = Runner(w.project, w.state()); "
            "[(r.client(name), r.connection(name).unnamed_pool) for name in w.project.workspace.data['connections']]; "
            "[r.flow_config(name) for name in w.project.flows]; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('jsonschema', 'referencing')))")

    finished = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                              env={**os.environ, **SANDBOX_ENV})

    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.strip() == "[]"
