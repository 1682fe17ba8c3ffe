"""The coverage API: `uvicorn services.coverage.main:app`."""

from importlib.metadata import version

from services.coverage.api import router
from shared.app import create_service_app
from shared.auth import whoami_router

app = create_service_app(
    service="coverage",
    title="Liangxin Coverage API",
    description=(
        "Organization and work coverage (组织覆盖 / 工作覆盖) down the region tree, snapshots, gaps with "
        "recommended formations, targets (挂图作战), establishment tasks (组建攻坚), reports, survey "
        "campaigns (摸底排查) and the mobile field-visit API. Rates are fractions 0–1 and null when there "
        "is nothing to divide by. Errors are RFC 9457 problem details (`application/problem+json`)."
    ),
    version=version("liangxin"),
    path_kinds={
        "recalculation_id": "recalculation",
        "target_id": "target",
        "task_id": "establishment_task",
        "campaign_id": "campaign",
        "assignment_id": "assignment",
        "visit_id": "visit",
    },
    routers=[whoami_router(), router],
    openapi_tags=[
        {"name": "auth", "description": "The current caller"},
        {"name": "coverage", "description": "Figures, history, recalculation"},
        {"name": "gaps", "description": "What is still uncovered and how to cover it"},
        {"name": "targets", "description": "挂图作战"},
        {"name": "establishment tasks", "description": "组建攻坚 and 双落地"},
        {"name": "reports", "description": "Workbook and chart"},
        {"name": "operations", "description": "Health, readiness"},
    ],
)
