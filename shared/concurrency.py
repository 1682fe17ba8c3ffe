"""Optimistic locking for edits: an object's version is its ETag; an edit sends it back in If-Match,
so two officials cannot overwrite each other silently."""

from __future__ import annotations

from shared.errors import ProblemError


def etag(version: int) -> str:
    return f'"v{version}"'


def check_if_match(if_match: str | None, version: int, *, what: str, required: bool = True) -> None:
    """428 without If-Match (when required) and for `*`, 412 when it names another version.

    `*` ("whatever is there now") would let an edit overwrite a change its author never saw, the
    lost update this check exists to stop: an edit names the version it was made from."""
    if if_match is not None and if_match.strip() == "*":
        raise ProblemError(
            428,
            f"If-Match: * is not accepted; send the ETag of the {what} you edited (GET it first)",
            code="precondition-required",
        )
    if if_match is None:
        if required:
            raise ProblemError(
                428, f"send If-Match with the ETag of the {what} you edited", code="precondition-required"
            )
        return
    if if_match.strip() != etag(version):
        raise ProblemError(
            412,
            f"the {what} changed since you read it; reload it and apply your edit again",
            code="precondition-failed",
            current_etag=etag(version),
        )
