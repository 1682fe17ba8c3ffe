"""The request-scoped session: the one place an API request commits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from shared.outbox import OUTBOX_IDS, SERVICE_KEY


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """Commit when the endpoint returns, roll back when it raises; then relay its events."""
    state = request.app.state
    async with state.db.sessionmaker() as session:
        session.info[SERVICE_KEY] = state.service
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise
    # Events are sent only after their transaction committed; the relay process
    # re-sends any that this fast path could not deliver.
    if ids := session.info.get(OUTBOX_IDS):
        await state.publisher.publish_soon(state.service, ids)


# scope="function": commit before the response is sent, so a client never sees a
# success for a transaction that then fails to commit.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
