"""Reference data a phone's pickers need offline: the regions of the surveyor's teams, industry
codes (GB/T 4754-2017 sections and divisions), areas, and the choice lists of the surveyor's forms.

Each download has a version (also its ETag): `If-None-Match` with it answers 304, and
`?since=<version>` answers only what changed since (regions and areas by their `updated_at`; the
others whole when anything changed), with every current key in `ids` so a phone drops what is gone.
A phone offline for days catches up with a few hundred bytes.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.coverage import forms
from services.coverage.mobile import current_forms, surveyor_of
from services.coverage.models import ReferenceData
from shared import regions
from shared.auth import Caller
from shared.errors import invalid

KINDS = ("regions", "industries", "areas", "choices")


@cache
def industries() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((Path(__file__).parent / "industries.json").read_text(encoding="utf-8"))
    return data


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()[:12]


def etag(version: str) -> str:
    return f'W/"{version}"'


def _stamp(moment: datetime | None) -> int:
    return int(moment.timestamp() * 1_000_000) if moment is not None else 0


def _since(since: str | None, scope: str) -> int | None:
    """The moment a delta starts from; None for everything (no `since`, or one of another scope)."""
    if since is None:
        return None
    stamp, _, its_scope = since.partition(".")
    if not (stamp.isascii() and stamp.isdigit()) or not its_scope:
        raise invalid("since", "pass the `version` of an earlier download")
    return int(stamp) if its_scope == scope else None


async def townships_of(session: AsyncSession, surveyor: uuid.UUID) -> list[str]:
    found = await session.execute(
        text(
            "SELECT DISTINCT tw FROM campaign_team t JOIN campaign c ON c.id = t.campaign_id AND c.status = 'active' "
            "CROSS JOIN LATERAL unnest(t.townships) AS tw WHERE :s = ANY(t.surveyor_ids) ORDER BY 1"
        ),
        {"s": surveyor},
    )
    return [r[0] for r in found]


async def _dated(
    session: AsyncSession, *, kind: str, sql: str, townships: list[str], since: str | None
) -> ReferenceData:
    """Rows under the townships with their `updated_at`, as a delta by time."""
    scope = _digest(townships)
    start = _since(since, scope)
    prefixes = [regions.prefix(t) + "%" for t in townships]
    found = list((await session.execute(text(sql), {"p": prefixes})).mappings()) if townships else []
    latest = max((r["updated_at"] for r in found), default=None)
    version = f"{_stamp(latest)}.{scope}"
    key = "code" if kind == "regions" else "id"
    items = [
        {k: (str(v) if isinstance(v, uuid.UUID) else v) for k, v in r.items() if k != "updated_at"}
        for r in found
        if start is None or _stamp(r["updated_at"]) > start
    ]
    return ReferenceData(
        kind=kind,
        version=version,
        since=since if start is not None else None,
        items=items,
        ids=[str(r[key]) for r in found],
    )


async def download(session: AsyncSession, *, caller: Caller, kind: str, since: str | None) -> ReferenceData:
    surveyor = surveyor_of(caller)
    if kind == "regions":
        townships = await townships_of(session, surveyor)
        return await _dated(
            session,
            kind=kind,
            townships=townships,
            since=since,
            sql="SELECT code, name, level, parent_code, updated_at FROM region WHERE code LIKE ANY(:p) ORDER BY code",
        )
    if kind == "areas":
        townships = await townships_of(session, surveyor)
        return await _dated(
            session,
            kind=kind,
            townships=townships,
            since=since,
            sql="SELECT id, name, kind, region_code, updated_at FROM area WHERE region_code LIKE ANY(:p) ORDER BY id",
        )
    if kind == "industries":
        data = industries()
        return _whole(kind, data["items"], [i["code"] for i in data["items"]], since)
    # choices: the fixed fields' lists and those of the surveyor's current forms
    lists: list[dict[str, Any]] = [
        {"campaign_id": None, "form_version": None, "question": f.name, "choices": [c.model_dump() for c in f.choices]}
        for f in forms.FIXED_FIELDS.values()
        if f.choices
    ]
    for form in await current_forms(session, surveyor):
        for q in form["questions"]:
            if q.get("choices"):
                lists.append(
                    {
                        "campaign_id": form["campaign_id"],
                        "form_version": form["version"],
                        "question": q["name"],
                        "choices": q["choices"],
                    }
                )
    return _whole(kind, lists, [f"{i['campaign_id'] or ''}:{i['question']}" for i in lists], since)


def _whole(kind: str, items: list[dict[str, Any]], ids: list[str], since: str | None) -> ReferenceData:
    """Data that changes rarely and whole: nothing when the phone has this version, else all."""
    version = f"0.{_digest(items)}"
    if since is not None:
        _since(since, "")  # well formed, whatever its scope
    unchanged = since == version
    return ReferenceData(
        kind=kind, version=version, since=since if unchanged else None, items=[] if unchanged else items, ids=ids
    )
