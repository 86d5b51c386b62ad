"""The fake's error answers: `{"code", "detail"}` bodies, and FastAPI-style 422 details."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

__all__ = ["ApiError", "FieldIssue", "validation_error"]


class ApiError(Exception):
    """Raised anywhere while handling a request; the app turns it into the error response.

    `detail` is a string for ordinary errors and a list of issue dicts for 422.
    """

    def __init__(
        self,
        status: int,
        code: str,
        detail: str | list[dict[str, Any]],
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}")
        self.status = status
        self.code = code
        self.detail = detail
        self.headers: dict[str, str] = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """Return the JSON body the API sends for this error."""
        return {"code": self.code, "detail": self.detail}


@attrs.frozen
class FieldIssue:
    """One entry of a 422 `detail` list, as FastAPI/Pydantic report it.

    The published schema types `input` as an object or null, so a scalar offending value
    is reported as null; the location and message still say what was wrong.
    """

    type: str
    loc: tuple[str | int, ...]
    msg: str
    input: object = None
    ctx: Mapping[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        """Return the issue as the API's JSON object."""
        item: dict[str, Any] = {
            "type": self.type,
            "loc": list(self.loc),
            "msg": self.msg,
            "input": self.input if isinstance(self.input, dict) else None,
        }
        if self.ctx is not None:
            item["ctx"] = dict(self.ctx)
        return item


def validation_error(issues: list[FieldIssue]) -> ApiError:
    """Return the `422 VALIDATION_ERROR` carrying `issues`."""
    return ApiError(422, "VALIDATION_ERROR", [issue.as_json() for issue in issues])
