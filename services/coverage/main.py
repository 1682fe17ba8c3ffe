"""The coverage API: `uvicorn services.coverage.main:app`."""

from importlib.metadata import version

from shared.app import create_service_app
from shared.auth import whoami_router

app = create_service_app(
    service="coverage",
    title="Liangxin Coverage API",
    description=(
        "Organization and work coverage (组织覆盖 / 工作覆盖) down the region tree, snapshots, "
        "targets (挂图作战), establishment tasks, survey campaigns (摸底排查) and the mobile "
        "field-visit API. Errors are RFC 9457 problem details (`application/problem+json`)."
    ),
    version=version("liangxin"),
    routers=[whoami_router()],
    openapi_tags=[
        {"name": "auth", "description": "The current caller"},
        {"name": "operations", "description": "Health, readiness"},
    ],
)
