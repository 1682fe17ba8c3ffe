"""Built-in templates (`builtin.json`): version 1 of each, with ids that never change."""

from __future__ import annotations

import json
import uuid
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.evaluation.models import EvaluationTemplate
from shared.regions import ROOT_CODE

BUILTIN_PATH = Path(__file__).with_name("builtin.json")
# The migration computes the same ids, so a template is the same row however it was seeded.
NAMESPACE = uuid.UUID("6c6a2f0e-1d7b-4c1e-9a55-0b5d7e1f2a10")


def template_id(code: str, version: int) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"{code}:{version}")


@cache
def rows() -> tuple[dict[str, Any], ...]:
    doc = json.loads(BUILTIN_PATH.read_text(encoding="utf-8"))
    return tuple(
        {
            "id": template_id(t["code"], 1),
            "code": t["code"],
            "version": 1,
            "kind": t["kind"],
            "name": t["name"],
            "region_code": ROOT_CODE,
            "definition": t["definition"],
            "builtin": True,
            "created_by": "system:builtin",
        }
        for t in doc["templates"]
    )


async def ensure(session: AsyncSession) -> int:
    """Insert any built-in template missing (idempotent); returns how many were added."""
    found = await session.execute(
        insert(EvaluationTemplate)
        .values([dict(r) for r in rows()])
        .on_conflict_do_nothing(index_elements=["code", "version"])
        .returning(col(EvaluationTemplate.id))
    )
    return len(found.all())
