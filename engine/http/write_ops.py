"""A write operation (create or update) of the entity config: request shape, batching, how its answer reads; and
the follow-up steps of a write with the progress mark that lets a later run resume them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ml_connector.config import Expr
from ml_connector.config.entity import WriteOpConfig, WriteStepConfig
from ml_connector.http.write_results import Answer, BatchResults, Sent

STEP_MARK = "@"  # <hash of the payload whose main write was confirmed>@<the step left>


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


@dataclass(frozen=True)
class WriteStep:
    """A follow-up request of a write (`write.then`), one call per record, after its main write is confirmed."""

    config: WriteStepConfig

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def idempotent(self) -> bool:
        return self.config.method != "POST" if self.config.idempotent is None else self.config.idempotent

    def applies(self, context: Mapping[str, Any]) -> bool:
        """Whether the step is sent for this record (its `when`, truthy by JMESPath's rules)."""
        if self.config.when is None:
            return True
        value = self.config.when.evaluate(context)
        return value is not None and value is not False and value not in ("", [], {})

    def body(self, context: Mapping[str, Any]) -> Any:
        return self.config.body.evaluate(context) if self.config.body is not None else None

    def expected(self, context: Mapping[str, Any]) -> dict[str, Any] | None:
        """What the record read back carries once the step landed (None: the step cannot be read back)."""
        return self.config.expect.evaluate(context) if self.config.expect is not None else None


def progress_mark(digest: str, step: str) -> str:
    """What the id map keeps as the hash of a record whose main write was confirmed and whose step `step` is left.

    It never equals a payload hash, so the record stays dirty (sent again) until every step succeeded.
    """
    return f"{digest}{STEP_MARK}{step}"


def step_left(stored: str | None, digest: str) -> str | None:
    """The step to resume from when the id map holds a progress mark for this very payload (None: write it all)."""
    done, mark, step = (stored or "").partition(STEP_MARK)
    return step if mark and done == digest and step else None
