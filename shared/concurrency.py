"""Optimistic locking for edits: an object's version is its ETag; an edit sends it back in If-Match,
so two officials cannot overwrite each other silently."""

from __future__ import annotations

from shared.errors import ProblemError


def etag(version: int) -> str:
    return f'"v{version}"'


def check_if_match(if_match: str | None, version: int, *, what: str, required: bool = True) -> None:
    """428 without If-Match (when required), 412 when it names another version; `*` matches any."""
    if if_match is None:
        if required:
            raise ProblemError(
                428, f"send If-Match with the ETag of the {what} you edited", code="precondition-required"
            )
        return
    if if_match.strip() not in (etag(version), "*"):
        raise ProblemError(
            412,
            f"the {what} changed since you read it; reload it and apply your edit again",
            code="precondition-failed",
            current_etag=etag(version),
        )
