"""The coverage worker: `arq services.coverage.jobs.WorkerSettings`."""

from services.coverage.events import HANDLERS
from shared.worker import worker_settings

WorkerSettings = worker_settings("coverage", HANDLERS)
