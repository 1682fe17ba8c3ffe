"""Events the evaluation service consumes (none yet)."""

from shared.worker import EventHandler

HANDLERS: dict[str, EventHandler] = {}
