"""Versions, resources, global and per-object describe, limits (facts §2.1, §2.4, §6)."""

from __future__ import annotations

from email.utils import parsedate_to_datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ml_connector.sandbox.salesforce.common import NOT_FOUND, Call, sf_error
from ml_connector.sandbox.salesforce.context import Org
from ml_connector.sandbox.salesforce.objects import ObjectDef

_SEASONS = ("Winter", "Spring", "Summer")


def release(version: int) -> str:
    """v62 = Winter '25, v63 Spring '25, v64 Summer '25, v66 Spring '26 ... (three releases a year)."""
    step = version - 62
    return f"{_SEASONS[step % 3]} '{25 + step // 3:02d}"


def versions(org: Org) -> Response:
    """``GET /services/data/``: no auth, not metered, ascending."""
    return JSONResponse([{"label": release(v), "url": f"/services/data/v{v}.0", "version": f"{v}.0"}
                         for v in range(int(org.config["min_version"]), int(org.config["max_version"]) + 1)])


def resolve(org: Org, name: str) -> ObjectDef:
    """The org's object of a URL, or 404 NOT_FOUND (Invoice without Revenue Cloud too)."""
    definition = org.store.definition(name)
    if definition is None:
        raise sf_error(*NOT_FOUND, 404)
    return definition


async def resources(org: Org, request: Request, call: Call, params: dict[str, str]) -> Response:
    base = f"/services/data/v{call.version}"
    names = ("sobjects", "query", "queryAll", "limits", "composite", "search", "recent", "tooling", "jobs")
    return JSONResponse({name: f"{base}/{name}" for name in names})


async def limits(org: Org, request: Request, call: Call, params: dict[str, str]) -> Response:
    maximum = org.usage.maximum
    fixed: dict[str, int] = {"DailyBulkApiBatches": 15_000, "DailyBulkV2QueryJobs": 10_000,
                             "DailyDeliveredPlatformEvents": 10_000, "DataStorageMB": 1024, "FileStorageMB": 1024}
    body: dict[str, Any] = {"DailyApiRequests": {"Max": maximum, "Remaining": max(0, maximum - org.usage.used())}}
    body.update({name: {"Max": value, "Remaining": value} for name, value in fixed.items()})
    return JSONResponse(body)


def _summary(definition: ObjectDef, version: str) -> dict[str, Any]:
    base = f"/services/data/v{version}/sobjects/{definition.name}"
    return {"name": definition.name, "label": definition.name, "labelPlural": definition.name + "s",
            "keyPrefix": definition.key_prefix, "custom": False, "queryable": True, "retrieveable": True,
            "createable": definition.createable, "updateable": True, "deletable": definition.deletable,
            "urls": {"sobject": base, "describe": f"{base}/describe", "rowTemplate": f"{base}/{{ID}}"}}


async def global_describe(org: Org, request: Request, call: Call, params: dict[str, str]) -> Response:
    objects = [resolve(org, name) for name in org.store.objects()]
    return JSONResponse({"encoding": "UTF-8", "maxBatchSize": 200,
                         "sobjects": [_summary(d, call.version) for d in objects]})


async def sobject_info(org: Org, request: Request, call: Call, params: dict[str, str]) -> Response:
    definition = resolve(org, params["sobject"])
    return JSONResponse({"objectDescribe": _summary(definition, call.version), "recentItems": []})


async def describe(org: Org, request: Request, call: Call, params: dict[str, str]) -> Response:
    definition = resolve(org, params["sobject"])
    since = request.headers.get("if-modified-since")
    if since:
        try:
            moment = parsedate_to_datetime(since)
        except (TypeError, ValueError):
            moment = None
        if moment is not None and moment.timestamp() >= org.metadata_changed:
            return Response(status_code=304)
    return JSONResponse(org.store.describe(definition.name, call.version))
