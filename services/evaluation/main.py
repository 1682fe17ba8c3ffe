"""The evaluation API: `uvicorn services.evaluation.main:app`."""

from importlib.metadata import version

from services.evaluation.api import router as evaluation_router
from services.evaluation.funding.api import router as funding_router
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
    path_kinds={
        "code": "template",
        "cycle_id": "cycle",
        "assessment_id": "assessment",
        "rectification_id": "rectification",
        "designation_id": "designation",
        "report_id": "review_report",
        "rule_set_id": "rule_set",
    },
    routers=[whoami_router(), evaluation_router, funding_router],
    openapi_tags=[
        {"name": "auth", "description": "The current caller"},
        {"name": "templates", "description": "Assessment templates as versioned data (built-ins from the seeds)"},
        {"name": "cycles", "description": "Assessment cycles: a year or quarter, a template version, a jurisdiction"},
        {"name": "assessments", "description": "Scores, submission and multi-level approval (星级评定, 标准化, 阵地)"},
        {"name": "rectifications", "description": "整转: party organizations rated at or below the threshold"},
        {"name": "designations", "description": "示范点 / 标杆 and their yearly quotas"},
        {"name": "reviews", "description": "双述双评: secretaries' reports and their scores"},
        {"name": "funding", "description": "经费: rule sets, annual allocations, the workbook"},
        {"name": "operations", "description": "Health, readiness"},
    ],
)
