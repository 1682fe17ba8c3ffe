"""The registry API: `uvicorn services.registry.main:app`."""

from importlib.metadata import version

from services.registry.api import auth_router, router
from services.registry.audit_log import router as audit_router
from shared.app import create_service_app
from shared.auth import whoami_router

app = create_service_app(
    service="registry",
    title="Liangxin Registry API",
    description=(
        "The registry of two new organizations (两新组织): regions, areas, organizations, party "
        "organizations, instructors, partner imports, the change feed and the ledger (台账). "
        "Every list is confined to the caller's jurisdiction; objects outside it answer 404. "
        "Errors are RFC 9457 problem details (`application/problem+json`)."
    ),
    version=version("liangxin"),
    path_kinds={
        "code": "region",
        "area_id": "area",
        "credit_code": "credit_code",
        "org_id": "organization",
        "party_org_id": "party_org",
        "instructor_id": "instructor",
        "assignment_id": "instructor_assignment",
    },
    routers=[auth_router, whoami_router(), router, audit_router],
    openapi_tags=[
        {"name": "auth", "description": "Tokens and the current caller"},
        {"name": "regions", "description": "The region tree (行政区划)"},
        {
            "name": "areas",
            "description": "Parks, business districts, buildings, markets (园区 / 商圈 / 楼宇 / 专业市场)",
        },
        {"name": "organizations", "description": "Two-new organizations and their ledger history"},
        {"name": "imports", "description": "Partner bulk imports by credit code"},
        {"name": "changes", "description": "The change feed partners follow"},
        {"name": "ledger", "description": "The ledger export (台账)"},
        {"name": "party organizations", "description": "Party organizations (党组织) and what they cover"},
        {"name": "instructors", "description": "Party-building instructors (党建指导员)"},
        {"name": "accounts", "description": "Staff users and partner API keys"},
        {"name": "audit", "description": "The append-only audit log of all services (安全审计)"},
        {"name": "operations", "description": "Health, readiness"},
    ],
)
