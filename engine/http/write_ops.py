"""A compiled write operation (create or update): request shape, batching, per-item result reading."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jmespath

from engine.transform.expressions import TemplateTree, compile_path, compile_template


@dataclass
class WriteOp:
    """A compiled write operation."""

    method: str
    path: Any
    params: TemplateTree
    body: TemplateTree | None
    id_path: Any
    quota: str | None
    batch_size: int
    batch_body: TemplateTree | None
    atomic: bool
    results: Mapping[str, Any]
    merge: TemplateTree | None
    fetch_existing: bool
    idempotent: bool | None
    compiled_results: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def compile(cls, spec: Mapping[str, Any]) -> WriteOp:
        batch = spec.get("batch") or {}
        results = spec.get("results") or {}
        op = cls(
            method=spec.get("method", "POST").upper(), path=compile_path(spec["path"]),
            params=TemplateTree(spec.get("params") or {}),
            body=TemplateTree(spec["body"]) if "body" in spec else None,
            id_path=jmespath.compile(spec["id"]) if spec.get("id") else None, quota=spec.get("quota"),
            batch_size=int(batch.get("size", 1)), batch_body=TemplateTree(batch["body"]) if batch else None,
            atomic=bool(batch.get("atomic", False)), results=results,
            merge=TemplateTree(spec["merge"]) if spec.get("merge") else None,
            fetch_existing=bool(spec.get("fetch_existing", False)), idempotent=spec.get("idempotent"))
        for name in ("items", "id", "key", "errors", "error_index", "error_key"):
            if results.get(name):
                op.compiled_results[name] = jmespath.compile(results[name])
        if results.get("error_message"):
            op.compiled_results["error_message"] = compile_template(results["error_message"])
        return op

    def item_errors(self, body: Any, match_values: list[Any]) -> dict[int, str]:
        """Error messages by input position, read from a batch response that names failed items.

        An error names its input by position (``error_index``) or by the input's match value (``error_key``).
        """
        path = self.compiled_results.get("errors")
        if path is None or not isinstance(body, (dict, list)):
            return {}
        index_path = self.compiled_results.get("error_index")
        key_path = self.compiled_results.get("error_key")
        message = self.compiled_results.get("error_message")
        positions = {str(value): index for index, value in enumerate(match_values)}
        found: dict[int, str] = {}
        for error in path.search(body) or []:
            index = index_path.search(error) if index_path is not None else None
            if index is None and key_path is not None:
                index = positions.get(str(key_path.search(error)))
            if isinstance(index, int):
                text = str(message.evaluate({"error": error})) if message is not None else str(error)
                found[index] = found[index] + "; " + text if index in found else text
        return found

    def saved_ids(self, body: Any, match_values: list[Any]) -> dict[int, str]:
        """Target ids by input position: results in input order, or matched by ``key`` when the API reorders."""
        saved = self.compiled_results["items"].search(body) if "items" in self.compiled_results else None
        id_path = self.compiled_results.get("id")
        if not isinstance(saved, list) or id_path is None:
            return {}
        key_path = self.compiled_results.get("key")
        if key_path is None:
            pairs = list(enumerate(saved[:len(match_values)]))
        else:
            positions = {str(value): index for index, value in enumerate(match_values)}
            pairs = [(positions[str(key_path.search(item))], item) for item in saved
                     if str(key_path.search(item)) in positions]
        ids = {}
        for index, item in pairs:
            found = id_path.search(item) if isinstance(item, dict) else None
            if found is not None:
                ids[index] = str(found)
        return ids
