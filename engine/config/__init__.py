"""Typed, normalised configs of connector and mapping specs, built once at load (`Spec.config`).

Expressions in them are `Expr` objects compiled by the runtime's own compile functions; defaults come from the
JSON Schemas. The runtime reads these instead of raw spec dicts.
"""

from engine.config.build import ConfigError, build
from engine.config.connector import ConnectorConfig
from engine.config.expr import EXPRESSION_KINDS, Expr, ExpressionKind, compile_expr
from engine.config.mapping import MappingConfig

__all__ = [
    "EXPRESSION_KINDS",
    "ConfigError",
    "ConnectorConfig",
    "Expr",
    "ExpressionKind",
    "MappingConfig",
    "build",
    "compile_expr",
]
