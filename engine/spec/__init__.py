"""Spec loading: YAML with line numbers, JSON Schema validation, semantic checks, the typed Project model."""

from ml_connector.spec.checks import run_checks, schedule_seconds
from ml_connector.spec.loader import discover, load_specs, load_workspace
from ml_connector.spec.model import Project, Spec, SpecKind
from ml_connector.spec.problems import SpecError, SpecProblem, field_name
from ml_connector.spec.schemas import SCHEMA_DIR, load_schema, validate_document
from ml_connector.spec.yamlload import SourceMap, load_yaml, parse_yaml

__all__ = [
    "SCHEMA_DIR",
    "Project",
    "SourceMap",
    "Spec",
    "SpecError",
    "SpecKind",
    "SpecProblem",
    "discover",
    "field_name",
    "load_schema",
    "load_specs",
    "load_workspace",
    "load_yaml",
    "parse_yaml",
    "run_checks",
    "schedule_seconds",
    "validate_document",
]
