"""Forged input, generated from the three OpenAPI documents: never a 500, always the field named.

- Every list and feed that pages (a `cursor` or `after` query parameter) answers a forged cursor
  with a 422 naming that parameter: values of the wrong type or arity, numbers Postgres cannot
  hold, strings it cannot store, bytes that are not base64 or not JSON, and every key of a cursor
  the API itself issued replaced by each of those.
An operation that pages and that this suite cannot exercise fails it.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests.test_authorization import operations, seed

NUL = "\u0000"


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# JSON values no key of any cursor may hold: wrong types, numbers beyond Postgres' bigint or
# beyond a float, text Postgres cannot store (a NUL, a lone surrogate).
POISONS = {
    "null": "null",
    "a word": '"x"',
    "infinity": "1e400",
    "NaN": "NaN",
    "beyond bigint": "99999999999999999999999",
    "below bigint": "-9223372036854775809",
    "a fraction": "1.5",
    "a boolean": "true",
    "a list": "[]",
    "an object": "{}",
    "a NUL": '"\\u0000"',
    "a lone surrogate": '"\\ud800"',
}


def forged_cursors() -> dict[str, str]:
    forged = {
        f"[{name}] x{n}": b64(f"[{','.join([raw] * n)}]".encode()) for name, raw in POISONS.items() for n in (1, 2, 3)
    }
    forged.update(
        {
            "no keys": b64(b"[]"),
            "four keys": b64(b'["x","y","z","w"]'),
            "an object": b64(b'{"id":"x"}'),
            "a bare string": b64(b'"x"'),
            "not base64": "!!not*base64!!",
            "a lone base64 character": "a",
            "not JSON": b64(b"[1,"),
            "not UTF-8": b64(b'["\xff\xfe"]'),
            "a NUL in the text": "WyJ4Il0\u0000",
            "a long string near the limit": b64(b'["' + b"a" * 360 + b'"]'),
            "a long number near the limit": b64(b"[" + b"9" * 370 + b"]"),
        }
    )
    return forged


def decode(cursor: str) -> list[Any]:
    return json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))


def mutations(issued: str) -> dict[str, str]:
    """The cursor the API issued with one key at a time replaced by a value no key may hold."""
    keys = decode(issued)
    out = {"itself with a NUL after it": issued + NUL, "itself with a character that is not base64": issued + "*"}
    for i, key in enumerate(keys):
        for name, raw in POISONS.items():
            if name == "a word" and isinstance(key, str):
                continue  # a different word is a well-formed key (a page after it)
            out[f"key {i} {name}"] = b64(json.dumps([*keys[:i], json.loads(raw), *keys[i + 1 :]]).encode())
        if isinstance(key, str):
            out[f"key {i} with a NUL"] = b64(json.dumps([*keys[:i], key + NUL, *keys[i + 1 :]]).encode())
    return out


def paging_operations(apps) -> list[tuple[str, str, str]]:
    found = []
    for service, method, path, op in operations(apps):
        names = {p["name"] for p in op.get("parameters", []) if p["in"] == "query"}
        if method == "GET" and names & {"cursor", "after"}:
            found.append((service, path, "cursor" if "cursor" in names else "after"))
    return found


def issued_cursor(page: dict[str, Any]) -> str | None:
    return page.get("next_cursor") or page.get("cursor")


# The sort keys lists page by, for a list that shows a single item (so issues no cursor): the
# cursor the API would issue after it, made from the item's fields, must answer the empty page.
SORT_KEYS = (("id",), ("due_on", "id"), ("code", "version"), ("region_code", "id"))


async def cursor_after_the_only_item(client, url: str, headers: dict[str, str], page: dict[str, Any]) -> str | None:
    if len(page.get("items") or []) != 1:
        return None
    item = page["items"][0]
    for keys in SORT_KEYS:
        if all(k in item for k in keys):
            cursor = b64(json.dumps([item[k] for k in keys], separators=(",", ":")).encode())
            response = await client.get(url, headers=headers, params={"cursor": cursor})
            if response.status_code == 200 and response.json()["items"] == []:
                return cursor
    return None


async def test_every_paging_operation_answers_a_forged_cursor_with_a_422_naming_it(
    apps, registry, coverage, evaluation, db, redis, admin
) -> None:
    clients = {"registry": registry, "coverage": coverage, "evaluation": evaluation}
    ids = await seed(db, redis, registry, coverage, admin, evaluation)
    paths = {"/v1/organizations/{org_id}/history": f"/v1/organizations/{ids['org_id']}/history"}
    walked, mutated, failures = [], 0, []
    for service, path, param in paging_operations(apps):
        if "{" in path and path not in paths:
            pytest.fail(f"{service} GET {path}: give the forged-cursor walk an object for it")
        url, client = paths.get(path, path), clients[service]
        first = await client.get(url, headers=admin, params={"limit": 1})
        assert first.status_code == 200, f"GET {path}: {first.text}"
        issued = issued_cursor(first.json()) or await cursor_after_the_only_item(client, url, admin, first.json())
        assert issued is not None, f"GET {path}: seed two items, or teach SORT_KEYS its cursor"
        # The issued cursor works; each of its keys replaced by a poison does not.
        again = await client.get(url, headers=admin, params={"limit": 1, param: issued})
        assert again.status_code == 200, f"GET {path} with its own cursor: {again.text}"
        forged = {**forged_cursors(), **mutations(issued)}
        mutated += len(forged) - len(forged_cursors())
        for name, cursor in forged.items():
            response = await client.get(url, headers=admin, params={param: cursor})
            answer = (response.status_code, response.headers.get("content-type"))
            errors = response.json().get("errors") if answer[1] == "application/problem+json" else None
            if answer != (422, "application/problem+json") or not errors or errors[0]["field"] != param:
                failures.append(f"GET {path} {param}={name}: {response.status_code} {response.text[:200]}")
        walked.append(path)
    assert failures == [], "\n".join(failures)
    assert len(walked) >= 19 and mutated >= 250, (walked, mutated)


async def test_a_forged_cursor_is_refused_before_the_object_is_looked_up(registry, admin) -> None:
    """Whether the organization exists or not, a forged cursor is the same 422: nothing to tell apart."""
    import uuid

    forged = b64(b"[1e400]")
    missing = await registry.get(f"/v1/organizations/{uuid.uuid4()}/history", headers=admin, params={"cursor": forged})
    assert missing.status_code == 422 and missing.json()["errors"][0]["field"] == "cursor", missing.text


async def test_feed_cursors_issued_before_stay_valid(registry, coverage, admin) -> None:
    """The change feed and the field app's sync keep their cursor format: `[txid, seq]`."""
    for client, path in ((registry, "/v1/changes"), (coverage, "/v1/mobile/sync")):
        response = await client.get(path, headers=admin, params={"after": b64(b"[12345,67]")})
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        assert decode(issued_cursor(body) or "") == [12345, 67]
