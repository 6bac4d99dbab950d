"""From a schema-checked spec to its typed config: schema defaults, compiled expressions, config dataclasses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from ml_connector.config import ConfigError, ConnectorConfig, Expr, ExpressionKind, MappingConfig, build
from ml_connector.config.expr import compile_later
from ml_connector.spec.checkutil import value_at
from ml_connector.spec.defaults import with_defaults
from ml_connector.spec.expressions import compile_expressions
from ml_connector.spec.model import Spec
from ml_connector.spec.problems import JsonPath, SpecError, SpecProblem, field_name
from ml_connector.spec.schemas import validate_document
from ml_connector.spec.yamlload import parse_yaml

CONFIGS: dict[str, type[ConnectorConfig] | type[MappingConfig]] = {
    "connector": ConnectorConfig,
    "mapping": MappingConfig,
}


def type_spec(spec: Spec, *, valid: bool) -> list[SpecProblem]:
    """Fill `spec.normalised`, `spec.expressions` and (when `valid` and all compiles) `spec.config`.

    Returns the problems of expressions that do not compile, or of a spec the config classes cannot model.
    """
    spec.normalised = with_defaults(spec.kind, spec.data)
    spec.expressions, errors = compile_expressions(spec.kind, spec.normalised)
    problems = [_problem(spec, path, message) for path, message in errors]
    return problems + (_configure(spec) if valid and not problems else [])


def retype_spec(spec: Spec, normalised: Any, expressions: dict[JsonPath, ExpressionKind]) -> list[SpecProblem]:
    """`type_spec` for a text that loaded without a problem before (spec/cache.py), from what that load found:
    no schema walk, and each expression compiles on first use."""
    spec.normalised = normalised
    spec.expressions = {path: compile_later(kind, value_at(normalised, path)) for path, kind in expressions.items()}
    return _configure(spec)


def _configure(spec: Spec) -> list[SpecProblem]:
    if spec.kind not in CONFIGS:
        return []
    try:
        spec.config = typed_config(spec)
    except ConfigError as exc:  # the schema accepts what the runtime cannot read: an engine bug, never silent
        message = f"the engine cannot model this spec ({exc.message}); please report it"
        return [_problem(spec, exc.path, message)]
    return []


def typed_config(spec: Spec) -> ConnectorConfig | MappingConfig:
    """The typed config of a valid connector or mapping spec; ConfigError if the schema and config disagree."""
    return build(CONFIGS[spec.kind], _with_expressions(spec.normalised, spec.expressions, ()))


def connector_config(data: dict[str, Any], file: str = "<connector>") -> ConnectorConfig:
    """The typed config of a connector spec given as data, by the loader's own path; SpecError on any problem."""
    config = _config_of("connector", data, file)
    assert isinstance(config, ConnectorConfig)
    return config


def mapping_config(data: dict[str, Any], file: str = "<mapping>") -> MappingConfig:
    """The typed config of a mapping spec given as data, by the loader's own path; SpecError on any problem."""
    config = _config_of("mapping", data, file)
    assert isinstance(config, MappingConfig)
    return config


def _config_of(kind: Literal["connector", "mapping"], data: dict[str, Any],
               file: str) -> ConnectorConfig | MappingConfig | None:
    parsed, source = parse_yaml(json.dumps(data), file)  # JSON is YAML: the same parser, line map and checks
    spec = Spec(kind, file, Path(file), parsed, source)
    problems = [*source.problems, *validate_document(spec.kind, parsed, source, file)]
    problems += type_spec(spec, valid=not problems)
    if problems:
        raise SpecError(problems)
    return spec.config


def _with_expressions(value: Any, expressions: dict[JsonPath, Expr], path: JsonPath) -> Any:
    """A copy of `value` with each compiled expression in place of its source."""
    if path in expressions:
        return expressions[path]
    if isinstance(value, dict):
        return {key: _with_expressions(item, expressions, (*path, key)) for key, item in value.items()}
    if isinstance(value, list):
        return [_with_expressions(item, expressions, (*path, index)) for index, item in enumerate(value)]
    return value


def _problem(spec: Spec, path: JsonPath, message: str) -> SpecProblem:
    return SpecProblem(str(spec.path), spec.line_of(path), field_name(path), message)
