"""The request-scoped session: the one place an API request commits."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from shared.outbox import AFTER_COMMIT, OUTBOX_IDS, SERVICE_KEY

log = logging.getLogger(__name__)


async def run_after_commit(session: AsyncSession) -> None:
    """Work that must not happen unless the transaction committed (enqueueing a job, say).

    Best effort by design: whoever registers such work also leaves a durable trace that a
    scheduled sweep picks up if this does not run or fails.
    """
    for action in session.info.pop(AFTER_COMMIT, []):
        try:
            await action()
        except Exception as exc:
            log.warning("after-commit action deferred", extra={"reason": type(exc).__name__})


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """Commit when the endpoint returns, roll back when it raises; then relay its events."""
    state = request.app.state
    async with state.db.sessionmaker() as session:
        session.info[SERVICE_KEY] = state.service
        try:
            yield session
            await _audit_write(request, session)
            await session.commit()
        except BaseException:
            await session.rollback()
            raise
    # Events are sent only after their transaction committed; the relay process
    # re-sends any that this fast path could not deliver.
    if ids := session.info.get(OUTBOX_IDS):
        await state.publisher.publish_soon(state.service, ids)
    await run_after_commit(session)


WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


async def _audit_write(request: Request, session: AsyncSession) -> None:
    """One audit row per write that is about to commit: who did which operation on what."""
    caller = getattr(request.state, "caller", None)
    if request.method not in WRITE_METHODS or caller is None:
        return
    from shared.audit import record

    route = getattr(request.scope.get("route"), "path", request.url.path)
    params = dict(request.path_params)
    await record(
        session,
        service=request.app.state.service,
        actor=caller.label,
        action=f"{request.method} {route}",
        object_type=route.split("/")[2] if route.count("/") >= 2 else None,
        object_id=",".join(str(v) for v in params.values()) or None,
        region_code=caller.region_code,
        client_addr=request.client.host if request.client else None,
        after={"path": params, "query": dict(request.query_params)} if params or request.query_params else None,
    )


# scope="function": commit before the response is sent, so a client never sees a
# success for a transaction that then fails to commit.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
