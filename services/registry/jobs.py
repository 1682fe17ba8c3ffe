"""The registry worker: `arq services.registry.jobs.WorkerSettings`."""

from services.registry.events import HANDLERS
from shared.worker import worker_settings

WorkerSettings = worker_settings("registry", HANDLERS)
