"""Events the registry consumes (none yet)."""

from shared.worker import EventHandler

HANDLERS: dict[str, EventHandler] = {}
