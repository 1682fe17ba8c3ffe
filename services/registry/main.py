"""The registry API: `uvicorn services.registry.main:app`."""

from importlib.metadata import version

from services.registry.api import auth_router, router
from shared.app import create_service_app
from shared.auth import whoami_router

app = create_service_app(
    service="registry",
    title="Liangxin Registry API",
    description=(
        "The registry of two new organizations (两新组织): regions, organizations, party "
        "organizations, instructors, partner imports, the change feed and the ledger (台账). "
        "Errors are RFC 9457 problem details (`application/problem+json`)."
    ),
    version=version("liangxin"),
    routers=[auth_router, whoami_router(), router],
    openapi_tags=[
        {"name": "auth", "description": "Tokens and the current caller"},
        {"name": "regions", "description": "The region tree (行政区划)"},
        {"name": "accounts", "description": "Staff users and partner API keys"},
        {"name": "operations", "description": "Health, readiness"},
    ],
)
