"""Imports every module that defines tables, so `metadata` knows the whole schema."""

import services.coverage.models
import services.evaluation.models
import services.registry.models  # noqa: F401
import shared.models
import shared.outbox  # noqa: F401
