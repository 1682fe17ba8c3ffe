"""JSON logs carrying the request id; the one logging set-up of every process."""

from __future__ import annotations

import json
import logging
import re
import sys
import traceback
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
service_var: ContextVar[str | None] = ContextVar("service", default=None)

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
# Attributes every LogRecord has; anything else was passed through `extra=`.
_RESERVED = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


def new_request_id(incoming: str | None = None) -> str:
    """Keep a caller's request id if it is sane, otherwise mint one."""
    if incoming and _REQUEST_ID_RE.match(incoming):
        return incoming
    return uuid.uuid4().hex


def describe(exc: BaseException) -> str:
    """A failure as an operator may read it in a log or an error column: its type and message,
    without the values it was about. SQL errors carry no bound parameters (the engines hide them;
    this drops them again should an error come from elsewhere); validation errors name the fields,
    not the input."""
    from pydantic import ValidationError

    orig = getattr(exc, "orig", None)
    cause = getattr(orig, "__cause__", None) or orig
    if cause is not None:
        # A database error: the server's first line (what was refused, never the statement) and its SQLSTATE.
        from shared.db import sqlstate_of

        message = str(cause).splitlines()[0] if str(cause) else ""
        code = sqlstate_of(exc)
        return f"{type(cause).__name__}{f' ({code})' if code else ''}: {message}"[:2000]
    if isinstance(exc, ValidationError):
        problems = exc.errors(include_input=False, include_url=False)[:10]
        fields = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in problems)
        return f"{type(exc).__name__}: {exc.error_count()} error(s) in {exc.title}: {fields}"[:2000]
    return f"{type(exc).__name__}: {_SQL_PARAMETERS.sub('[parameters hidden]', str(exc))}"[:2000]


_SQL_PARAMETERS = re.compile(r"\[parameters: .*?\](?=\n|$)", re.S)


# arq's "job started" line (arq.worker): elapsed, job reference, arguments, extra.
_ARQ_JOB_START = "%6.2fs → %s(%s)%s"


class SafeFormatter(logging.Formatter):
    """Exceptions in log lines only as `describe` puts them: the frames of a traceback, never the
    values an exception's message carries (a library may log a failed job as `... %s: %s` with
    the exception itself, as arq does)."""

    def format(self, record: logging.LogRecord) -> str:
        self.scrub(record)
        return super().format(record)

    @staticmethod
    def scrub(record: logging.LogRecord) -> None:
        if record.msg == _ARQ_JOB_START and isinstance(record.args, tuple) and len(record.args) == 4:
            # arq prints a job's arguments as it starts it: an event's payload (names, counts). The
            # job reference (function and event id) says which job it was; the payload stays out.
            record.args = (record.args[0], record.args[1], "…", record.args[3])
        if isinstance(record.args, tuple) and any(isinstance(a, BaseException) for a in record.args):
            record.args = tuple(describe(a) if isinstance(a, BaseException) else a for a in record.args)

    def formatException(self, ei: Any) -> str:
        chain: list[BaseException] = []
        exc: BaseException | None = ei[1]
        while exc is not None and exc not in chain:
            chain.append(exc)
            exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
        parts = ["".join([*traceback.format_tb(e.__traceback__), describe(e)]) for e in reversed(chain)]
        return "Traceback (most recent call last):\n" + "\n(which led to)\n".join(parts)


class JsonFormatter(SafeFormatter):
    def format(self, record: logging.LogRecord) -> str:
        self.scrub(record)
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


_base_factory = logging.getLogRecordFactory()


def _record_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    # Read the context when the record is made: by the time a handler formats it, the
    # request may have finished and its context been reset.
    record = _base_factory(*args, **kwargs)
    if (rid := request_id_var.get()) is not None:
        record.request_id = rid
    if (svc := service_var.get()) is not None:
        record.service = svc
    return record


logging.setLogRecordFactory(_record_factory)


def configure_logging(level: str = "INFO", *, json_output: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_output else SafeFormatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's access log repeats what our middleware logs, with query strings
    # that can carry personal data; keep only its errors.
    logging.getLogger("uvicorn.access").handlers[:] = []
    logging.getLogger("uvicorn.access").propagate = False
    for name in ("uvicorn", "uvicorn.error", "arq"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
