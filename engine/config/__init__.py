"""Typed, normalised configs of connector and mapping specs, built once at load (`Spec.config`).

Expressions in them are `Expr` objects compiled by the runtime's own compile functions; defaults come from the
JSON Schemas. The runtime reads these instead of raw spec dicts.
"""

from ml_connector.config.build import ConfigError, build
from ml_connector.config.connector import ConnectorConfig
from ml_connector.config.expr import EXPRESSION_KINDS, Expr, ExpressionKind, compile_expr
from ml_connector.config.mapping import MappingConfig

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
