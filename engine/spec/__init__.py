"""Spec loading: YAML with line numbers, JSON Schema validation, semantic checks, the typed Project model."""

from engine.spec.checks import run_checks, schedule_seconds
from engine.spec.loader import discover, load_specs, load_workspace
from engine.spec.model import Project, Spec, SpecKind
from engine.spec.problems import SpecError, SpecProblem, field_name
from engine.spec.schemas import SCHEMA_DIR, load_schema, validate_document
from engine.spec.yamlload import SourceMap, load_yaml, parse_yaml

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
