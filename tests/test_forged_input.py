"""Forged input, generated from the three OpenAPI documents: never a 500, always the field named.

- Every list and feed that pages (a `cursor` or `after` query parameter) answers a forged cursor
  with a 422 naming that parameter: values of the wrong type or arity, numbers Postgres cannot
  hold, strings it cannot store, bytes that are not base64 or not JSON, and every key of a cursor
  the API itself issued replaced by each of those.
- Every string a request can carry (every string property of every request schema, the keys of
  its mappings, every query, path and form parameter) with a NUL (U+0000) or an unpaired
  surrogate in it, text Postgres cannot store, answers 422 naming the field; in a batch (a partner
  import, the field app's visits) only its own record or visit is refused, the others go in.
An operation, body or string this suite cannot exercise fails it.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from typing import Any
from urllib.parse import quote

import pytest
from pydantic import BaseModel
from sqlalchemy import text

from tests.helpers import LIXIAN, make_user
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
SORT_KEYS = (
    ("id",),
    ("due_on", "id"),
    ("code", "version"),
    ("region_code", "id"),
    ("processed_at", "event_id"),
    ("visit_id",),
)


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
    # Two failed consumptions in every inbox, so the operators' lists issue a cursor.
    async with db.session() as session:
        for service in ("registry", "coverage", "evaluation"):
            await session.execute(
                text(
                    f"INSERT INTO {service}_inbox (event_id, consumer, event_type, status, error, region_code) "
                    "SELECT gen_random_uuid(), :s, 'registry.organization.updated', 'failed', 'TimeoutError', :r "
                    "FROM generate_series(1, 2)"
                ),
                {"s": service, "r": LIXIAN},
            )
    paths = {
        "/v1/organizations/{org_id}/history": f"/v1/organizations/{ids['org_id']}/history",
        "/v1/campaigns/{campaign_id}/answers": f"/v1/campaigns/{ids['campaign_id']}/answers",
    }
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


# ---- text Postgres cannot store, in every string a request can carry --------------------------

# A NUL, and an unpaired surrogate (JSON allows "\ud800"; it cannot be encoded for Postgres).
UNSTORABLE = {"a NUL": NUL, "a lone surrogate": "\ud800"}
MISSING = object()
TODAY = "2027-01-10"


def valid_bodies() -> dict[tuple[str, str, str], Any]:
    """A valid body for every JSON request body of the three documents (the walk fills in the
    optional strings they leave out)."""
    from services.evaluation.builtin import rows
    from services.evaluation.funding.engine import SEED_RULE_SETS
    from tests.helpers import LIXIAN, credit_code, org_record

    definition = next(r["definition"] for r in rows() if r["code"] == "qinghe_nine_aspects")
    rules = [rule for code in ("fuyang", "diqing", "luzhou") for rule in SEED_RULE_SETS[code]["rules"]]
    some_id = "00000000-0000-4000-8000-000000000001"
    return {
        ("registry", "POST", "/v1/regions/import"): {"records": [{"code": LIXIAN, "name": "澧县"}]},
        ("registry", "POST", "/v1/areas"): {"name": "园区", "kind": "park", "region_code": LIXIAN},
        ("registry", "PATCH", "/v1/areas/{area_id}"): {"name": "改名"},
        ("registry", "POST", "/v1/organizations"): org_record(1),
        ("registry", "PATCH", "/v1/organizations/{org_id}"): {"name": "改名"},
        ("registry", "POST", "/v1/organizations/import"): org_record(1),  # one record (a batch)
        ("registry", "POST", "/v1/party-orgs"): {
            "name": "党支部",
            "level": "branch",
            "formation": "single",
            "region_code": "430723100001",
            "established_on": TODAY,
            "covered_credit_codes": [credit_code(1)],
        },
        ("registry", "PATCH", "/v1/party-orgs/{party_org_id}"): {"name": "改名"},
        ("registry", "PUT", "/v1/party-orgs/{party_org_id}/covered-organizations"): {"credit_codes": [credit_code(1)]},
        ("registry", "POST", "/v1/party-orgs/{party_org_id}/dissolve"): {"dissolved_on": TODAY, "reason": "撤销"},
        ("registry", "POST", "/v1/instructors"): {
            "name": "指导员",
            "kind": "part_time",
            "source": "retired_official",
            "region_code": LIXIAN,
        },
        ("registry", "POST", "/v1/instructors/{instructor_id}/assignments"): {
            "credit_code": credit_code(1),
            "start_date": TODAY,
        },
        ("registry", "POST", "/v1/instructor-assignments/{assignment_id}/end"): {"end_date": TODAY, "reason": "结束"},
        ("registry", "POST", "/v1/users"): {
            "username": "officer_1",
            "password": "correct-horse-battery",
            "role": "officer",
            "region_code": LIXIAN,
        },
        ("registry", "POST", "/v1/api-keys"): {"name": "伙伴", "scopes": ["registry:read"], "region_code": LIXIAN},
        ("coverage", "POST", "/v1/targets"): {
            "name": "目标",
            "region_code": LIXIAN,
            "target_rate": 1.0,
            "deadline": "2027-06-30",
        },
        ("coverage", "POST", "/v1/establishment-tasks:from-gaps"): {
            "region_code": LIXIAN,
            "responsible_unit": "组织部",
            "due_date": "2027-03-31",
        },
        ("coverage", "PATCH", "/v1/establishment-tasks/{task_id}"): {"note": "改"},
        ("coverage", "POST", "/v1/campaigns"): {
            "name": "摸排",
            "region_code": LIXIAN,
            "kinds": ["enterprise"],
            "criteria": {},
            "rounds": [{"number": 1, "starts_on": TODAY, "ends_on": "2027-02-10"}],
        },
        ("coverage", "POST", "/v1/campaigns/{campaign_id}/teams"): {
            "name": "小组",
            "surveyor_ids": [some_id],
            "townships": ["430723100000"],
        },
        ("coverage", "POST", "/v1/campaigns/{campaign_id}/assignments:generate"): {"round": 1},
        ("coverage", "PATCH", "/v1/assignments/{assignment_id}"): {"team_id": some_id},
        ("coverage", "POST", "/v1/mobile/visits"): {  # one visit (a batch)
            "id": some_id,
            "campaign_id": some_id,
            "new_organization": {"name": "新公司", "region_code": "430723100001"},
            "visited_at": f"{TODAY}T10:00:00+08:00",
            "outcome": "operating",
            "location": {"lat": 29.6, "lon": 111.7},
            "form_version": 1,
            "answers": {"opinions": ["funding"], "note": "门口有招牌"},
            "paradata": {"device_id": "android-1", "app_version": "2.3.1", "gps_accuracy_m": 5},
        },
        ("coverage", "PUT", "/v1/campaigns/{campaign_id}/form"): {
            "title": "摸排表",
            "questions": [
                {
                    "name": "opinions",
                    "type": "select_multiple",
                    "label": "意见建议",
                    "hint": "可多选",
                    "required": True,
                    "choices": [{"value": "funding", "label": "经费"}],
                    "constraint": "count-selected(.) >= 1",
                    "constraint_message": "至少选一项",
                    "relevant": "${outcome} = 'operating'",
                }
            ],
        },
        ("registry", "POST", "/v1/auth/device-token"): {
            "username": "surveyor.li",
            "password": "correct-horse-battery",
            "device_id": "android-1",
            "device_name": "手机",
        },
        ("registry", "POST", "/v1/auth/refresh"): {"refresh_token": f"lxr_{some_id.replace('-', '')}_secret"},
        ("coverage", "POST", "/v1/visits/{visit_id}:reject"): {"reason": "不符合"},
        ("coverage", "POST", "/v1/visits/{visit_id}/registration:confirm"): {},
        ("coverage", "POST", "/v1/visits/{visit_id}/registration:dismiss"): {"reason": "不是"},
        ("evaluation", "POST", "/v1/templates"): {
            "code": "lixian_stars",
            "kind": "star_rating",
            "name": "星级",
            "definition": definition,
        },
        ("evaluation", "PUT", "/v1/templates/{code}"): {"definition": definition},
        ("evaluation", "POST", "/v1/cycles"): {"name": "评定", "year": 2027, "template_id": some_id},
        ("evaluation", "POST", "/v1/cycles/{cycle_id}/assessments"): {
            "party_org_id": some_id,
            "scores": {"team_score": "10"},
        },
        ("evaluation", "PATCH", "/v1/assessments/{assessment_id}"): {"scores": {"team_score": "10"}},
        ("evaluation", "POST", "/v1/assessments/{assessment_id}:return"): {"reason": "退回"},
        ("evaluation", "PUT", "/v1/designation-quotas"): {
            "region_code": LIXIAN,
            "year": 2027,
            "level": "county",
            "type": "model",
            "quota": 3,
        },
        ("evaluation", "POST", "/v1/designations"): {
            "party_org_id": some_id,
            "year": 2027,
            "level": "county",
            "type": "model",
        },
        ("evaluation", "POST", "/v1/cycles/{cycle_id}/reviews"): {
            "party_org_id": some_id,
            "secretary_name": "书记",
            "content": "述职",
            "reported_on": TODAY,
        },
        ("evaluation", "POST", "/v1/reviews/{report_id}/scores"): {"evaluator_kind": "member", "score": "90"},
        ("evaluation", "POST", "/v1/funding/rule-sets"): {
            "code": "lixian_fund",
            "name": "经费",
            "rules": rules,
            "options": {"months": "any_day", "part_year": "full", "secretaries": "assumed"},
        },
        ("evaluation", "POST", "/v1/funding/allocations:compute"): {"year": 2027, "rule_set_code": "fuyang"},
        ("evaluation", "POST", "/v1/funding/allocations:close"): {"year": 2025, "rule_set_code": "fuyang"},
    }


def batches() -> dict[tuple[str, str, str], tuple[type[BaseModel], Any]]:
    """Bodies whose items the service validates one by one: the item's model, and the batch around
    one item."""
    from services.coverage.models import VisitIn
    from services.registry.models import OrganizationRecord

    return {
        ("registry", "POST", "/v1/organizations/import"): (
            OrganizationRecord,
            lambda item: {"records": [item], "dry_run": True},
        ),
        ("coverage", "POST", "/v1/mobile/visits"): (VisitIn, lambda item: {"visits": [item]}),
    }


def field_name(field: tuple[str | int, ...]) -> str:
    out = ""
    for part in field:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + part
    return out


class Strings:
    """Every place a string can go in a body, walked along its schema and a valid value of it:
    `targets` (body path, field the error must name, how to put the text there), and `uncovered`
    (string properties no target reaches, because the valid body leaves out the object holding them)."""

    def __init__(self, defs: dict[str, Any]) -> None:
        self.defs = defs
        self.targets: list[tuple[tuple[str | int, ...], tuple[str | int, ...], str]] = []
        self.uncovered: list[str] = []

    def resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            node = {**self.defs[node["$ref"].rsplit("/", 1)[-1]], **{k: v for k, v in node.items() if k != "$ref"}}
        return node

    def textual(self, node: dict[str, Any]) -> bool:
        node = self.resolve(node)
        return node.get("type") == "string" or "enum" in node or "const" in node

    def walk(self, node: dict[str, Any], value: Any, path: tuple, field: tuple) -> None:
        node = self.resolve(node)
        branches = [self.resolve(b) for b in node.get("anyOf", node.get("oneOf", []))]
        if (disc := node.get("discriminator")) is not None:
            if not isinstance(value, dict):
                self.uncovered.append(f"{field_name(field)}: give the valid body one of each kind")
                return
            tag, variant = (
                value[disc["propertyName"]],
                self.resolve({"$ref": disc["mapping"][value[disc["propertyName"]]]}),
            )
            # A wrong tag is an error of the item (no variant to name a field of).
            self.targets.append(((*path, disc["propertyName"]), field, "set"))
            properties = {k: v for k, v in variant["properties"].items() if k != disc["propertyName"]}
            return self.walk({**variant, "properties": properties}, value, path, (*field, tag))
        if branches:
            if any(self.textual(b) for b in branches):
                self.targets.append((path, field, "set"))
            for b in branches:
                kind = b.get("type")
                if (kind == "array" and isinstance(value, list)) or (kind == "object" and isinstance(value, dict)):
                    self.walk(b, value, path, field)
                elif kind in ("array", "object") and value is MISSING:
                    self.walk(b, MISSING, path, field)
            return
        if self.textual(node):
            self.targets.append((path, field, "set"))
        elif node.get("type") == "array":
            items = self.resolve(node.get("items", {}))
            if isinstance(value, list) and value:
                for i, item in enumerate(value):
                    self.walk(items, item, (*path, i), (*field, i))
            elif self.textual(items):
                self.targets.append((path, field, "set-list"))
            else:
                self.uncovered.append(f"{field_name(field)}: give the valid body an item")
        elif "properties" in node:
            if not isinstance(value, dict):
                self.uncovered.append(f"{field_name(field)}: give the valid body this object")
                return
            for name, sub in node["properties"].items():
                self.walk(sub, value.get(name, MISSING), (*path, name), (*field, name))
        elif node.get("type") == "object" or not node:  # a mapping, or free-form JSON
            self.targets.append((path, field, "key"))
            values = node.get("additionalProperties")
            if isinstance(value, dict) and isinstance(values, dict):
                for key, item in value.items():
                    self.walk(values, item, (*path, key), (*field, key))


def poisoned(body: Any, path: tuple, how: str, bad: str) -> Any:
    body = json.loads(json.dumps(body))
    *parents, last = path
    holder = body
    for part in parents:
        holder = holder[part]
    current = holder.get(last, MISSING) if isinstance(holder, dict) else holder[last]
    if how == "set":
        holder[last] = (current if isinstance(current, str) else "1") + bad
    elif how == "set-list":
        holder[last] = ["a" + bad]
    else:  # "key": a key of a mapping or free-form JSON
        mapping = current if isinstance(current, dict) else {}
        first = next(iter(mapping), None)
        if first is not None:
            holder[last] = {first + bad if k == first else k: v for k, v in mapping.items()}
        else:
            holder[last] = {"k" + bad: "v"}
    return body


def names(field: str, wanted: str) -> bool:
    """`field` is `wanted` or a part of it (an item of a list, a key of a mapping)."""
    return field == wanted or field.startswith((wanted + ".", wanted + "["))


def request_bodies(apps) -> list[tuple[str, str, str, str, dict[str, Any], dict[str, Any]]]:
    found = []
    for service, method, path, op in operations(apps):
        for content_type, content in op.get("requestBody", {}).get("content", {}).items():
            found.append((service, method, path, content_type, content["schema"], op))
    return found


async def test_text_postgres_cannot_store_is_refused_in_every_string_of_every_body(
    apps, registry, coverage, evaluation, admin
) -> None:
    """For every string property of every request schema (and the keys of every mapping), a valid
    body with a NUL or an unpaired surrogate there is a 422 naming that field; in a batch, its item
    is refused naming the field. Nothing reaches Postgres: the paths name objects that do not exist."""
    clients = {"registry": registry, "coverage": coverage, "evaluation": evaluation}
    bodies, per_item = valid_bodies(), batches()
    covered, failures, uncovered = [], [], []
    headers = {**admin, "If-Match": '"v1"', "Content-Type": "application/json"}
    for service, method, path, content_type, schema, _op in request_bodies(apps):
        key = (service, method, path)
        url = re.sub(r"\{([a-z_]+)\}", lambda m: "lixian_stars" if m.group(1) == "code" else str(uuid.uuid4()), path)
        if content_type != "application/json":
            continue  # form fields: see the parameter walk below
        if key not in bodies:
            pytest.fail(f"{service} {method} {path}: give the walk a valid body")
        defs = apps[service].openapi()["components"]["schemas"]
        strings = Strings(defs)
        if key in per_item:
            model, wrap = per_item[key]
            item_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            strings.defs = {**defs, **item_schema.pop("$defs", {})}
            strings.walk(item_schema, bodies[key], (), ())
        else:
            wrap = None
            strings.walk(schema, bodies[key], (), ())
        uncovered += [f"{service} {method} {path} {u}" for u in strings.uncovered]
        seen: set[str] = set()
        for body_path, field, how in strings.targets:
            wanted = field_name(field)
            if (abstract := re.sub(r"\[\d+\]", "[]", wanted)) in seen:
                continue  # one item of a list stands for the others (each kind of rule is its own)
            seen.add(abstract)
            for label, bad in UNSTORABLE.items():
                body = poisoned(bodies[key], body_path, how, bad)
                sent = json.dumps(wrap(body) if wrap else body)  # ASCII: a lone surrogate travels escaped
                response = await clients[service].request(method, url, headers=headers, content=sent)
                what = f"{method} {path} {wanted} with {label} ({how})"
                if wrap is None:
                    ok = response.status_code == 422 and response.headers["content-type"] == "application/problem+json"
                    fields = [e["field"] for e in response.json().get("errors") or []] if ok else []
                else:
                    answer = response.json() if response.status_code == 200 else {}
                    if "records" in json.loads(sent):
                        ok = answer.get("rejected") == 1
                        fields = [e["field"] for e in answer.get("errors", [])]
                    else:
                        ok = answer.get("items", [{}])[0].get("status") == "invalid"
                        fields = [r["field"] for r in answer["items"][0]["reasons"]] if ok else []
                if not (ok and fields and all(names(f, wanted) for f in fields)):
                    failures.append(f"{what}: {response.status_code} {response.text[:300]}")
            covered.append(f"{service} {method} {path} {abstract}")
    assert uncovered == [], "\n".join(uncovered)
    assert failures == [], "\n".join(failures)
    assert len(covered) >= 200, covered


def parameter_value(name: str) -> str:
    return {"code": "430723000000", "credit_code": "91430723MA4L0XXXX0", "version": "1"}.get(name, str(uuid.uuid4()))


async def test_text_postgres_cannot_store_is_refused_in_every_parameter(
    apps, registry, coverage, evaluation, admin
) -> None:
    """Every query and path parameter, and every field of a form body, with a NUL in it: a 422
    naming it, on every operation."""
    clients = {"registry": registry, "coverage": coverage, "evaluation": evaluation}
    checked, failures = 0, []
    for service, method, path, op in operations(apps):
        params = [(p["in"], p["name"]) for p in op.get("parameters", []) if p["in"] in ("query", "path")]
        defs = apps[service].openapi()["components"]["schemas"]
        for content_type, content in op.get("requestBody", {}).get("content", {}).items():
            if content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
                fields = Strings(defs).resolve(content["schema"])["properties"]
                params += [("form", n) for n, s in fields.items() if "contentMediaType" not in s]
        for where, name in params:
            path_values = {p: parameter_value(p) for p in re.findall(r"\{([a-z_]+)\}", path)}
            query: dict[str, str] = {}
            form: dict[str, str] | None = None
            if where == "path":
                path_values[name] += NUL
            elif where == "query":
                query[name] = "x" + NUL
            else:
                form = {name: "x" + NUL}
            url = path
            for key, value in path_values.items():
                url = url.replace("{" + key + "}", quote(value, safe=""))
            response = await clients[service].request(method, url, headers=admin, params=query, data=form)
            errors = response.json().get("errors") or [{}]
            if response.status_code != 422 or errors[0].get("field") != name:
                failures.append(f"{method} {path} {where} {name}: {response.status_code} {response.text[:200]}")
            checked += 1
    assert failures == [], "\n".join(failures)
    assert checked >= 150, checked


async def test_a_nul_in_one_imported_record_refuses_that_record_alone(db, registry, admin) -> None:
    """Found in the defects review: a NUL in one record's name sank the whole import of 100."""
    from sqlalchemy import text

    from tests.helpers import import_tree, org_record

    await import_tree(registry, admin)
    records = [org_record(n) for n in range(1, 101)]
    records[57]["name"] = "澧县\u0000公司"
    records[58]["address"] = "澧阳街道\ud800"
    body = json.dumps({"records": records})  # ASCII: the lone surrogate travels escaped
    response = await registry.post(
        "/v1/organizations/import", headers={**admin, "Content-Type": "application/json"}, content=body
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert (result["created"], result["rejected"]) == (98, 2)
    assert [(e["row"], e["field"]) for e in result["errors"]] == [(57, "name"), (58, "address")]
    assert "NUL" in result["errors"][0]["reason"]
    async with db.session() as session:
        assert (await session.execute(text("SELECT count(*) FROM organization"))).scalar_one() == 98


async def test_a_nul_in_one_visit_refuses_that_visit_alone(db, redis, registry, coverage, evaluation, admin) -> None:
    """Found in the defects review: a NUL in a visit's notes answered 500 for the whole batch."""
    await seed(db, redis, registry, coverage, admin, evaluation)
    surveyor = await make_user(db, role="surveyor", region="430723000000")
    campaign = (await coverage.get("/v1/campaigns", headers=admin)).json()["items"][0]
    visits = [
        {
            "id": str(uuid.uuid4()),
            "campaign_id": campaign["id"],
            "new_organization": {"name": f"新发现公司{n}", "region_code": "430723100001"},
            "visited_at": "2026-01-10T10:00:00+08:00",
            "outcome": "operating",
            "notes": f"门口有招牌{n}",
            "form_version": 1,  # the seeded campaign has a form
        }
        for n in range(3)
    ]
    visits[1]["notes"] = "门口\u0000有招牌"
    response = await coverage.post("/v1/mobile/visits", headers=surveyor, json={"visits": visits})
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert [i["status"] for i in items] == ["accepted", "invalid", "accepted"], items
    assert items[1]["reasons"] == [
        {"field": "notes", "reason": "must not contain NUL (U+0000) or unpaired surrogate characters"}
    ]
    listed = (await coverage.get("/v1/visits", headers=admin)).json()["items"]
    assert {v["id"] for v in listed} >= {visits[0]["id"], visits[2]["id"]}
    assert visits[1]["id"] not in {v["id"] for v in listed}
