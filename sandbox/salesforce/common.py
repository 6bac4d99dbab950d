"""What every Salesforce route shares: the error shapes (facts §2.5) and the request context."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response


class ApiError(Exception):
    """Raised anywhere in a route; becomes its response."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def sf_error(code: str, message: str, status: int = 400, fields: list[str] | None = None) -> ApiError:
    """The REST error body: always a JSON array of ``{"message","errorCode"[,"fields"]}``."""
    item: dict[str, Any] = {"message": message, "errorCode": code}
    if fields is not None:
        item["fields"] = fields
    return ApiError(JSONResponse([item], status_code=status))


class RecordError(Exception):
    """One record's failure (single writes turn it into a 400/404 array, collections into a result entry)."""

    def __init__(self, code: str, message: str, fields: list[str] | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.fields, self.status = code, message, fields or [], status

    def as_api_error(self) -> ApiError:
        return sf_error(self.code, self.message, self.status, self.fields)

    def as_result(self) -> dict[str, Any]:
        return {"statusCode": self.code, "message": self.message, "fields": self.fields}


NOT_FOUND = ("NOT_FOUND", "The requested resource does not exist")


async def read_json(request: Request) -> Any:
    """The JSON body, or 400 JSON_PARSER_ERROR like the platform."""
    raw = await request.body()
    try:
        return json.loads(raw or b"null")
    except ValueError as exc:
        raise sf_error("JSON_PARSER_ERROR", f"Unexpected character: was expecting a JSON value: {exc}") from exc


@dataclass(frozen=True)
class Call:
    """One authenticated REST call: its API version and the CDC change origin it gives its writes."""

    version: str  # "66.0"
    origin: str  # "com/salesforce/api/rest/66.0;client=ERPSync"

    @staticmethod
    def of(request: Request, version: str) -> Call:
        options = request.headers.get("sforce-call-options", "")
        client = ""
        for part in options.split(","):
            key, _, value = part.strip().partition("=")
            if key.strip().lower() == "client":
                client = value.strip()
        origin = f"com/salesforce/api/rest/{version}" + (f";client={client}" if client else "")
        return Call(version, origin)
