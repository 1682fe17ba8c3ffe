"""Uploaded workbooks checked before anything inflates them, for every service that reads files.

An XLSX is a zip: its directory declares each member's sizes, and Python's zipfile never inflates a
member past what it declares, so members, unpacked size and compression ratio can be refused before
a parser sees a byte of XML (a 600,000-row zip bomb is 90 KB).
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    max_records: int
    max_columns: int
    max_unpacked_bytes: int
    max_compression_ratio: float
    max_zip_members: int


class Refused(Exception):
    """The file is refused: `status` 413 (too much to read) or 422 (not an acceptable table)."""

    def __init__(self, status: int, field: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.field, self.reason = status, field, reason


def check_archive(data: bytes, limits: Limits) -> None:
    """Refuse a workbook whose zip directory declares more than the limits, before inflating it."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError):
        raise Refused(422, "file", "is not a readable .xlsx workbook") from None
    if len(members) > limits.max_zip_members:
        raise Refused(422, "file", f"holds {len(members)} files; a workbook of at most {limits.max_zip_members}")
    unpacked = sum(m.file_size for m in members)
    packed = sum(m.compress_size for m in members)
    if unpacked > limits.max_unpacked_bytes:
        raise Refused(413, "file", f"unpacks to {unpacked} bytes; at most {limits.max_unpacked_bytes}")
    if (ratio := unpacked / max(packed, 1)) > limits.max_compression_ratio:
        raise Refused(413, "file", f"unpacks {ratio:.1f} times its size; at most {limits.max_compression_ratio:g}")
