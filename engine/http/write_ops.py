"""A write operation (create or update) of the entity config: request shape, batching, how its answer reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.config import Expr
from engine.config.entity import WriteOpConfig
from engine.http.write_results import Answer, BatchResults, Sent


@dataclass
class WriteOp:
    """A write operation, its expressions compiled at load."""

    config: WriteOpConfig
    results: BatchResults | None

    @classmethod
    def compile(cls, config: WriteOpConfig) -> WriteOp:
        return cls(config, BatchResults(config.results) if config.results is not None else None)

    @property
    def method(self) -> str:
        return self.config.method

    @property
    def path(self) -> Expr:
        return self.config.path

    @property
    def params(self) -> Expr:
        return self.config.params

    @property
    def body(self) -> Expr | None:
        return self.config.body

    @property
    def id_path(self) -> Expr | None:
        return self.config.id

    @property
    def quota(self) -> str | None:
        return self.config.quota

    @property
    def batch_body(self) -> Expr | None:
        return self.config.batch.body if self.config.batch is not None else None

    @property
    def atomic(self) -> bool:
        return self.config.batch is not None and self.config.batch.atomic

    @property
    def merge(self) -> Expr | None:
        return self.config.merge

    @property
    def fetch_existing(self) -> bool:
        return self.config.fetch_existing

    @property
    def idempotent(self) -> bool | None:
        return self.config.idempotent

    @property
    def size(self) -> int:
        """Records per call."""
        return self.config.batch.size if self.config.batch is not None else 1

    def answers(self, body: Any, sent: list[Sent]) -> list[Answer]:
        """What a batch answer says of each record sent (the schema requires `results` with every batch)."""
        assert self.results is not None, "a batch operation without results"
        return self.results.read(body, sent)

    def created(self, status: int, body: Any) -> bool | None:
        """Whether a single-record answer says it created the record (None: the operation does not say)."""
        created = self.config.created
        if created is not None and created.status is not None:
            return status in created.status
        if created is not None and created.body is not None:
            return bool(created.body.evaluate(body)) if isinstance(body, (dict, list)) else None
        return None
