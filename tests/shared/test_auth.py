"""Authentication and the caller dependency, across the three services."""

from __future__ import annotations

import secrets
from datetime import timedelta

import httpx
import jwt
import pytest
from sqlalchemy import update
from sqlmodel import col

from shared.auth import JWT_ALGORITHM
from shared.models import StaffUser, utcnow
from shared.settings import get_settings
from tests.helpers import LIXIAN, WULING, import_tree, make_api_key, make_user


@pytest.fixture
def clients(registry: httpx.AsyncClient, coverage: httpx.AsyncClient, evaluation: httpx.AsyncClient):
    return {"registry": registry, "coverage": coverage, "evaluation": evaluation}


@pytest.mark.parametrize("service", ["registry", "coverage", "evaluation"])
async def test_no_caller_is_401_with_problem_json(clients, service: str) -> None:
    response = await clients[service].get("/v1/auth/me")
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["detail"].startswith("authentication required")


async def test_token_from_registry_is_accepted_by_all_three(db, registry, coverage, evaluation) -> None:
    await make_user(db, role="officer", region="000000000000", username="li.officer")
    login = await registry.post("/v1/auth/token", data={"username": "li.officer", "password": "correct-horse-battery"})
    assert login.status_code == 200
    body = login.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 3600
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    for client in (registry, coverage, evaluation):
        me = await client.get("/v1/auth/me", headers=headers)
        assert me.status_code == 200
        assert me.json()["name"] == "li.officer"
        assert "registry:write" in me.json()["scopes"] and "audit:read" not in me.json()["scopes"]


async def test_wrong_password_and_unknown_user_get_the_same_answer(db, registry) -> None:
    await make_user(db, role="officer", region="000000000000", username="wang")
    wrong = await registry.post("/v1/auth/token", data={"username": "wang", "password": "not-the-password"})
    unknown = await registry.post("/v1/auth/token", data={"username": "nobody", "password": "whatever-it-is"})
    assert wrong.status_code == unknown.status_code == 400
    assert wrong.json()["error"] == unknown.json()["error"] == "invalid_grant"
    assert wrong.json()["detail"] == unknown.json()["detail"]


async def test_expired_forged_and_deactivated_tokens_are_refused(db, coverage) -> None:
    headers = await make_user(db, role="officer", region="000000000000", username="zhao")
    settings = get_settings()
    claims = jwt.decode(
        headers["Authorization"][7:], settings.jwt_secret, algorithms=[JWT_ALGORITHM], audience="liangxin"
    )
    expired = jwt.encode({**claims, "exp": utcnow() - timedelta(minutes=1)}, settings.jwt_secret, JWT_ALGORITHM)
    forged = jwt.encode(claims, "another-secret-of-sufficient-length-000000", JWT_ALGORITHM)
    r = await coverage.get("/v1/auth/me", headers={"Authorization": f"Bearer {expired}"})
    assert r.status_code == 401 and r.json()["detail"] == "the access token has expired"
    r = await coverage.get("/v1/auth/me", headers={"Authorization": f"Bearer {forged}"})
    assert r.status_code == 401 and r.json()["detail"] == "the access token is not valid"

    assert (await coverage.get("/v1/auth/me", headers=headers)).status_code == 200
    async with db.session() as session:
        await session.execute(update(StaffUser).where(col(StaffUser.username) == "zhao").values(is_active=False))
    r = await coverage.get("/v1/auth/me", headers=headers)
    assert r.status_code == 401 and r.json()["detail"] == "the account behind this token is not active"


async def test_api_key_scopes_give_403_not_401(db, registry, admin) -> None:
    await import_tree(registry, admin)
    reader = await make_api_key(db, scopes=["registry:read"], region=LIXIAN)
    me = await registry.get("/v1/auth/me", headers=reader)
    assert me.status_code == 200 and me.json()["kind"] == "api_key" and me.json()["scopes"] == ["registry:read"]
    assert (await registry.get(f"/v1/regions/{LIXIAN}", headers=reader)).status_code == 200
    denied = await registry.post(
        "/v1/regions/import", json={"records": [{"code": "430723102000", "name": "x"}]}, headers=reader
    )
    assert denied.status_code == 403
    assert denied.json()["required_scope"] == "registry:write"
    bad = await registry.get("/v1/auth/me", headers={"X-API-Key": reader["X-API-Key"][:-2] + "zz"})
    assert bad.status_code == 401


async def test_surveyor_cannot_use_registry_write(db, registry, admin) -> None:
    await import_tree(registry, admin)
    surveyor = await make_user(db, role="surveyor", region=LIXIAN)
    response = await registry.post(
        "/v1/regions/import", json={"records": [{"code": "430723102000", "name": "x"}]}, headers=surveyor
    )
    assert response.status_code == 403


async def test_sibling_jurisdiction_sees_404_never_the_region(db, registry, admin) -> None:
    await import_tree(registry, admin)
    lixian = await make_user(db, role="officer", region=LIXIAN)
    assert (await registry.get(f"/v1/regions/{LIXIAN}/children", headers=lixian)).status_code == 200
    hidden = await registry.get(f"/v1/regions/{WULING}", headers=lixian)
    missing = await registry.get("/v1/regions/439999000000", headers=lixian)
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["detail"] == missing.json()["detail"] == "region not found"
    # Up the tree is outside too: a county officer cannot read the province.
    assert (await registry.get("/v1/regions/430000000000", headers=lixian)).status_code == 404


async def test_admin_creates_users_only_inside_own_jurisdiction(db, registry, admin) -> None:
    await import_tree(registry, admin)
    county_admin = await make_user(db, role="admin", region=LIXIAN)
    ok = await registry.post(
        "/v1/users",
        headers=county_admin,
        json={
            "username": "surveyor.1",
            "password": "long-enough-pass",
            "role": "surveyor",
            "region_code": "430723100000",
        },
    )
    assert ok.status_code == 201 and ok.json()["role"] == "surveyor"
    outside = await registry.post(
        "/v1/users",
        headers=county_admin,
        json={"username": "surveyor.2", "password": "long-enough-pass", "role": "surveyor", "region_code": WULING},
    )
    assert outside.status_code == 404
    login = await registry.post("/v1/auth/token", data={"username": "surveyor.1", "password": "long-enough-pass"})
    assert login.status_code == 200


PRODUCTION = {
    "env": "production",
    "database_url": "postgresql://x/y",
    "redis_url": "redis://x",
    "jwt_secret": secrets.token_hex(32),
    "api_key_pepper": secrets.token_urlsafe(32),
    "pii_hash_key": secrets.token_hex(16),  # 32 random hex characters: the shortest accepted
}


async def test_production_settings_refuse_placeholder_secrets() -> None:
    from pydantic import ValidationError

    from shared.settings import Settings

    with pytest.raises(ValidationError, match="LIANGXIN_JWT_SECRET must be set"):
        Settings.model_validate({**PRODUCTION, "jwt_secret": "changeme"})
    ok = Settings.model_validate(PRODUCTION)
    assert ok.database_url == "postgresql+asyncpg://x/y"


@pytest.mark.parametrize(
    "weak",
    [
        "a" * 32,
        "0123456789" * 4,
        "abcdefghijklmnopqrstuvwxyz012345",
        "Zk9" * 11,
        "passwordpasswordpasswordpassword",
        "aabbccddeeffgghhiijjkkllmmnnoopp",
    ],
)
@pytest.mark.parametrize("setting", ["jwt_secret", "api_key_pepper", "pii_hash_key", "metrics_token"])
async def test_production_secrets_must_not_be_predictable_and_are_never_echoed(setting: str, weak: str) -> None:
    from pydantic import ValidationError

    from shared.settings import Settings

    with pytest.raises(ValidationError) as refused:
        Settings.model_validate({**PRODUCTION, setting: weak})
    message = str(refused.value)
    assert f"LIANGXIN_{setting.upper()} is too predictable" in message
    assert not any(weak[i : i + 6] in message for i in range(len(weak) - 5)), message
    for other in ("jwt_secret", "api_key_pepper", "pii_hash_key"):  # nor the other secrets
        assert PRODUCTION[other][:12] not in message, message
    short = "k3Q9-" + "x7"  # refused for its length, likewise without the value
    with pytest.raises(ValidationError) as too_short:
        Settings.model_validate({**PRODUCTION, setting: short})
    assert "at least 32 characters" in str(too_short.value) and short not in str(too_short.value)


async def test_a_token_cannot_outlive_the_configured_lifetime(db, coverage) -> None:
    """Signed with the real key (a leaked key, a tool), a token meant to live longer than
    LIANGXIN_ACCESS_TOKEN_MINUTES, or dated in the future, is refused."""
    headers = await make_user(db, role="officer", region="000000000000", username="qian")
    settings = get_settings()
    claims = jwt.decode(
        headers["Authorization"][7:], settings.jwt_secret, algorithms=[JWT_ALGORITHM], audience="liangxin"
    )
    lifetime = settings.access_token_minutes * 60
    assert (await coverage.get("/v1/auth/me", headers=headers)).status_code == 200
    forever = jwt.encode({**claims, "exp": claims["iat"] + 365 * 86400}, settings.jwt_secret, JWT_ALGORITHM)
    later = jwt.encode(
        {**claims, "iat": claims["iat"] + 3600, "exp": claims["iat"] + 3600 + lifetime},
        settings.jwt_secret,
        JWT_ALGORITHM,
    )
    within = jwt.encode({**claims, "exp": claims["iat"] + lifetime}, settings.jwt_secret, JWT_ALGORITHM)
    for token in (forever, later):
        refused = await coverage.get("/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert refused.status_code == 401 and refused.json()["detail"] == "the access token is not valid"
    assert (await coverage.get("/v1/auth/me", headers={"Authorization": f"Bearer {within}"})).status_code == 200
