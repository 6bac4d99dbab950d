"""``POST /composite`` (facts §4.5): up to 25 subrequests in one API call, later ones referring to earlier
results with ``@{referenceId.path}``; allOrNone=true runs them in one transaction and halts the rest on a failure.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ml_connector.sandbox.salesforce.common import ApiError, Call, RecordError, read_json, sf_error
from ml_connector.sandbox.salesforce.context import Org

Dispatch = Callable[[Request, str], Awaitable[Response]]
_REFERENCE = re.compile(r"@\{([A-Za-z0-9_]+)\.([^}]+)\}")
_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
MAX_SUBREQUESTS = 25
HALTED = [{"errorCode": "PROCESSING_HALTED",
           "message": "The transaction was rolled back since another operation in the same transaction failed."}]


class _Halt(Exception):
    """allOrNone: a subrequest failed, undo the whole call."""


def _lookup(results: dict[str, Any], ref: str, path: str) -> Any:
    if ref not in results:
        raise sf_error("INVALID_REFERENCE", f"Invalid reference specified. No value for {ref}.{path} found in {ref}.")
    value = results[ref]
    for name, index in _STEP.findall(path):
        try:
            value = value[int(index)] if index else value[name]
        except (KeyError, IndexError, TypeError):
            raise sf_error("INVALID_REFERENCE", f"Invalid reference specified. No value for {ref}.{path} found in "
                           f"{ref}. Provided referenceId ('{ref}') must start with a letter or a number, and it "
                           "can contain only letters, numbers and underscores ('_').") from None
    return value


def _substitute(value: Any, results: dict[str, Any]) -> Any:
    if isinstance(value, str):
        whole = _REFERENCE.fullmatch(value)
        if whole:
            return _lookup(results, whole[1], whole[2])
        return _REFERENCE.sub(lambda m: str(_lookup(results, m[1], m[2])), value)
    if isinstance(value, dict):
        return {k: _substitute(v, results) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, results) for v in value]
    return value


def _subrequest(request: Request, method: str, url: str, body: Any) -> Request:
    path, _, query = url.partition("?")
    raw = b"" if body is None else json.dumps(body).encode()
    headers = [(k, v) for k, v in request.scope["headers"] if k.lower() not in {b"content-length", b"content-type"}]
    headers += [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    scope = {**request.scope, "method": method, "path": path, "raw_path": path.encode(),
             "query_string": query.encode(), "headers": headers}
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": raw, "more_body": False}

    return Request(scope, receive)


async def composite_endpoint(org: Org, request: Request, call: Call, params: dict[str, str]) -> Response:
    payload = await read_json(request)
    subrequests = payload.get("compositeRequest") if isinstance(payload, dict) else None
    if not isinstance(subrequests, list) or not subrequests:
        raise sf_error("JSON_PARSER_ERROR", "compositeRequest is required")
    if len(subrequests) > MAX_SUBREQUESTS:
        raise sf_error("INVALID_BATCH_REQUEST", f"The number of subrequests can't exceed {MAX_SUBREQUESTS}.")
    all_or_none = bool(payload.get("allOrNone", False))
    dispatch: Dispatch = org.dispatch
    results: dict[str, Any] = {}
    out: list[dict[str, Any]] = []

    async def run_all() -> None:
        for sub in subrequests:
            ref = str(sub.get("referenceId", ""))
            try:
                url = _substitute(str(sub.get("url", "")), results)
                body = _substitute(sub.get("body"), results)
                prefix = f"/services/data/v{call.version}/"
                if not url.startswith("/services/data/v"):
                    raise sf_error("INVALID_URL", f"The URL must start with {prefix}", 400)
                response = await dispatch(_subrequest(request, str(sub.get("method", "GET")).upper(), url, body),
                                          url.partition("?")[0].removeprefix("/services/data"))
            except ApiError as err:
                response = err.response
            except RecordError as err:
                response = err.as_api_error().response
            data = json.loads(bytes(response.body)) if response.body else None
            headers: dict[str, str] = {}
            if response.status_code == 201 and isinstance(data, dict) and "id" in data:
                headers["Location"] = f"{url.partition('?')[0].rstrip('/')}/{data['id']}"
            out.append({"body": data, "httpHeaders": headers, "httpStatusCode": response.status_code,
                        "referenceId": ref})
            if response.status_code < 300:
                results[ref] = data
            elif all_or_none:
                raise _Halt

    if all_or_none:
        try:
            with org.store.transaction():
                await run_all()
        except _Halt:
            failed = len(out) - 1
            halted = [{"body": HALTED, "httpHeaders": {}, "httpStatusCode": 400,
                       "referenceId": str(sub.get("referenceId", ""))} for sub in subrequests]
            halted[failed] = out[failed]
            out = halted
    else:
        await run_all()
    return JSONResponse({"compositeResponse": out})
