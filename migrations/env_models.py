"""Imports every module that defines tables, so `metadata` knows the whole schema."""

from services.coverage import models as coverage_models
from services.evaluation import models as evaluation_models
from services.evaluation.funding import models as funding_models
from services.registry import models as registry_models
from shared import audit, outbox
from shared import models as shared_models

__all__ = [
    "audit",
    "coverage_models",
    "evaluation_models",
    "funding_models",
    "outbox",
    "registry_models",
    "shared_models",
]
