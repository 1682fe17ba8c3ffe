"""The evaluation worker: `arq services.evaluation.jobs.WorkerSettings`."""

from services.evaluation.events import HANDLERS
from shared.worker import worker_settings

WorkerSettings = worker_settings("evaluation", HANDLERS)
