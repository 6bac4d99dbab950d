"""Reading a batch answer: which items it confirms (and with which id), which it rejects, which it leaves unknown.

An item counts as written only when the answer names it: by the key we sent, by its target id, or by its position
when the spec says the API answers one result per record in order, or by the input's position each result
carries (``results.match``). Failures may be named by position, by our key or by target id (a list of ids is
fine). Whatever the answer does not name is *unknown*. A result that says the flow cannot apply here
(``results.skip_flow``) skips the flow before any record of the batch is settled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ml_connector.config import Expr
from ml_connector.config.entity import ResultsConfig
from ml_connector.http.skips import FlowSkipped

KEY = "key"
ID = "id"
POSITION = "position"
INDEX = "index"
UNMENTIONED = "the response does not mention it"


@dataclass(frozen=True)
class Sent:
    """What identifies one record of a batch: the match value we sent and the target id, when known."""

    key: Any
    target_id: str | None


@dataclass(frozen=True)
class Answer:
    """What a batch answer says about one record: confirmed (with id and created flag), failed, or unknown."""

    confirmed: bool = False
    target_id: str | None = None
    created: bool | None = None
    error: str | None = None
    unknown: str = UNMENTIONED


def _names(values: list[Any]) -> dict[str, list[int]]:
    """Positions by the text of each value (a value sent twice names neither record)."""
    found: dict[str, list[int]] = {}
    for index, value in enumerate(values):
        if value not in (None, ""):
            found.setdefault(str(value), []).append(index)
    return found


def _listed(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


class BatchResults:
    """A compiled ``results`` section of a batch write operation."""

    def __init__(self, config: ResultsConfig) -> None:
        self.match: str = config.match
        self.items, self.id, self.key, self.created = config.items, config.id, config.key, config.created
        self.errors, self.error_index = config.errors, config.error_index
        self.error_key, self.error_id = config.error_key, config.error_id
        self.error_message = config.error_message
        self.failed = config.failed
        self.index = config.index
        self.skip_flow, self.skip_message = config.skip_flow, config.skip_message

    def read(self, body: Any, sent: list[Sent]) -> list[Answer]:
        """One answer per sent record, in the order sent."""
        if not isinstance(body, (dict, list)):
            return [Answer(unknown="the response is not JSON") for _ in sent]
        self._skip(body)
        errors = self._errors(body, sent)
        confirmed, unknown = self._confirmed(body, sent, errors)
        answers = []
        for index in range(len(sent)):
            if index in errors:
                answers.append(Answer(error=errors[index]))
            elif index in confirmed:
                target_id, created = confirmed[index]
                answers.append(Answer(confirmed=True, target_id=target_id, created=created))
            else:
                answers.append(Answer(unknown=unknown))
        return answers

    def _errors(self, body: Any, sent: list[Sent]) -> dict[int, str]:
        """Error messages by position, for the errors that name their record (by index, our key or target id)."""
        if self.errors is None:
            return {}
        by_key = _names([s.key for s in sent])
        by_id = _names([s.target_id for s in sent])
        found: dict[int, str] = {}
        for error in _listed(self.errors.evaluate(body)):
            named: set[int] = set()
            index = self.error_index.evaluate(error) if self.error_index is not None else None
            if isinstance(index, int) and not isinstance(index, bool) and 0 <= index < len(sent):
                named.add(index)
            for path, names in ((self.error_key, by_key), (self.error_id, by_id)):
                for value in _listed(path.evaluate(error) if path is not None else None):
                    positions = names.get(str(value), [])
                    named.update(positions if len(positions) == 1 else [])
            text = self._message(error)
            for index in named:
                found[index] = f"{found[index]}; {text}" if index in found else text
        return found

    def _skip(self, body: Any) -> None:
        """Raises FlowSkipped when a result says the flow cannot apply here (nothing of the batch is settled)."""
        if self.skip_flow is None:
            return
        for result in _listed(self.items.evaluate(body)):
            if self.skip_flow.evaluate(result):
                message = str(self.skip_message.evaluate({"error": result})) if self.skip_message is not None \
                    else f"a result says the flow cannot apply here ({self.skip_flow.source}): {str(result)[:200]}"
                raise FlowSkipped(message)

    def _message(self, error: Any) -> str:
        return str(self.error_message.evaluate({"error": error})) if self.error_message else str(error)

    def _confirmed(self, body: Any, sent: list[Sent],
                   errors: dict[int, str]) -> tuple[dict[int, tuple[str | None, bool | None]], str]:
        """(target id, created) by position for the records the results name; why the others are unknown.

        A result that says it failed (``failed``) goes into ``errors`` instead: some APIs list each record's
        outcome in one list, successes and failures alike.
        """
        results = self.items.evaluate(body)
        if not isinstance(results, list):
            return {}, UNMENTIONED
        if self.match == POSITION:
            if len(results) != len(sent):
                return {}, (f"the response lists {len(results)} results for {len(sent)} records "
                            "(results.match: position needs one each)")
            pairs = list(enumerate(results))
        elif self.match == INDEX:
            pairs = self._indexed(results, len(sent))
        else:
            path: Expr | None
            path, names = (self.key, _names([s.key for s in sent])) if self.match == KEY else \
                (self.id, _names([s.target_id for s in sent]))
            pairs = []
            for result in results:
                positions = names.get(str(path.evaluate(result))) if path is not None else None
                if positions and len(positions) == 1:
                    pairs.append((positions[0], result))
        confirmed: dict[int, tuple[str | None, bool | None]] = {}
        for index, result in pairs:
            if self.failed is not None and self.failed.evaluate(result):
                errors.setdefault(index, self._message(result))
                continue
            found = self.id.evaluate(result) if self.id is not None else None
            created = bool(self.created.evaluate(result)) if self.created is not None else None
            confirmed[index] = (str(found) if found is not None else None, created)
        return confirmed, UNMENTIONED

    def _indexed(self, results: list[Any], count: int) -> list[tuple[int, Any]]:
        """(position, result) for each result naming an input by ``index``; a position named twice names neither,
        one out of range or not an integer names nothing."""
        assert self.index is not None, "the schema requires `index` with `match: index`"
        named: dict[int, list[Any]] = {}
        for result in results:
            value = self.index.evaluate(result) if isinstance(result, dict) else None
            if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < count:
                named.setdefault(value, []).append(result)
        return [(position, found[0]) for position, found in named.items() if len(found) == 1]
