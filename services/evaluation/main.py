"""The evaluation API: `uvicorn services.evaluation.main:app`."""

from importlib.metadata import version

from services.evaluation.funding_api import router as funding_router
from shared.app import create_service_app
from shared.auth import whoami_router

app = create_service_app(
    service="evaluation",
    title="Liangxin Evaluation API",
    description=(
        "Assessment templates as versioned data, star ratings (星级评定), standardization, "
        "site standards, designations (示范点), rectification (整转), reviews (双述双评) and "
        "funding. Errors are RFC 9457 problem details (`application/problem+json`)."
    ),
    version=version("liangxin"),
    routers=[whoami_router(), funding_router],
    openapi_tags=[
        {"name": "auth", "description": "The current caller"},
        {"name": "funding", "description": "经费: rule sets, annual allocations, the workbook"},
        {"name": "operations", "description": "Health, readiness"},
    ],
)
