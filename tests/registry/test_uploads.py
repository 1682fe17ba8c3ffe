"""Hostile uploads: a zip bomb or a huge CSV is refused without stalling the registry; every cap holds."""

from __future__ import annotations

import asyncio
import csv
import io
import math
import statistics
import time
import zipfile
from collections.abc import Callable
from typing import Any

import httpx
import psutil
import pytest
from openpyxl import Workbook

from tests.helpers import credit_code, org_record

HEADER = ["credit_code", "name", "kind", "region_code"]
UPLOAD = "/v1/organizations/import/file"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


# ---- files ----------------------------------------------------------------------------------

_PACKAGE = {
    "[Content_Types].xml": (
        '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        '<Override PartName="/xl/workbook.xml" '
        'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
        '<Override PartName="/xl/worksheets/sheet1.xml" '
        'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>'
    ),
    "_rels/.rels": (
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        '<Relationship Id="rId1" Target="xl/workbook.xml" '
        'Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument"/></Relationships>'
    ),
    "xl/workbook.xml": (
        '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
        'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
        '<sheets><sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>'
    ),
    "xl/_rels/workbook.xml.rels": (
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        '<Relationship Id="rId1" Target="worksheets/sheet1.xml" '
        'Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet"/></Relationships>'
    ),
}


def _row(values: list[Any]) -> str:
    return "<row>" + "".join(f'<c t="inlineStr"><is><t>{v}</t></is></c>' for v in values) + "</row>"


def sheet_xml(rows: list[list[Any]], *, repeat: int = 0, dimension: str | None = None) -> bytes:
    """A worksheet of `rows`, then `repeat` copies of a one-cell row (how a bomb is made)."""
    head = f'<dimension ref="{dimension}"/>' if dimension else ""
    body = "".join(_row(r) for r in rows) + _row(["x"]) * repeat
    return (
        '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
        f"{head}<sheetData>{body}</sheetData></worksheet>"
    ).encode()


def workbook(sheet: bytes, *, extra_members: int = 0) -> bytes:
    """A minimal XLSX holding `sheet`, written member by member with deflate."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, content in _PACKAGE.items():
            archive.writestr(name, content)
        archive.writestr("xl/worksheets/sheet1.xml", sheet)
        for n in range(extra_members):
            archive.writestr(f"docProps/custom{n}.xml", f"<note>{n}</note>")
    return out.getvalue()


def bomb(rows: int, *, dimension: bool) -> bytes:
    """The issue's zip bomb: a header, then `rows` one-cell rows, deflated about 300-fold."""
    return workbook(sheet_xml([HEADER], repeat=rows, dimension=f"A1:D{rows + 1}" if dimension else None))


def records(n: int) -> list[list[Any]]:
    return [[credit_code(i), org_record(i)["name"], "enterprise", "430723100001"] for i in range(n)]


def csv_file(rows: list[list[Any]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue().encode()


def openpyxl_file(rows: list[list[Any]]) -> bytes:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def unpacked_and_packed(data: bytes) -> tuple[int, int]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = archive.infolist()
    return sum(m.file_size for m in members), sum(m.compress_size for m in members)


async def upload(registry: httpx.AsyncClient, admin: dict[str, str], name: str, data: bytes) -> httpx.Response:
    kind = XLSX if name.endswith(".xlsx") else "text/csv"
    return await registry.post(UPLOAD, headers=admin, files={"file": (name, data, kind)})


def refusal(response: httpx.Response) -> tuple[int, str, str]:
    assert response.headers["content-type"] == "application/problem+json", response.text
    (error,) = response.json()["errors"]
    return response.status_code, error["field"], error["reason"]


# ---- the registry keeps answering ------------------------------------------------------------

TICK = 0.01


async def healthz_delays(registry: httpx.AsyncClient, stop: Callable[[int], bool]) -> list[float]:
    """How late /healthz answers a client that asks every 10 ms: the event loop's stall, if any."""
    delays: list[float] = []
    while not stop(len(delays)):
        start = time.perf_counter()
        await asyncio.sleep(TICK)
        assert (await registry.get("/healthz")).status_code == 200
        delays.append(time.perf_counter() - start - TICK)
    return delays


def upload_children() -> int:
    """Upload readers running now, as children of this process (the registry runs in it)."""
    running = 0
    for child in psutil.Process().children(recursive=True):
        try:
            running += "services.registry.uploads" in child.cmdline() and child.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:  # gone (or a zombie) between listing and looking
            continue
    return running


def million_short_rows() -> bytes:
    return (",".join(HEADER) + "\n" + "1,2,3,4\n" * 1_250_000).encode()


@pytest.mark.parametrize(
    ("name", "make", "ratio_cap", "expected"),
    [
        # The file: refused from its zip directory alone.
        ("bomb.xlsx", lambda: bomb(600_000, dimension=True), None, (413, "file")),
        # No dimension and no ratio check to stop it: openpyxl reads until one row past the cap.
        ("bomb.xlsx", lambda: bomb(200_000, dimension=False), 1e9, (422, "records")),
        ("huge.csv", million_short_rows, None, (422, "records")),
    ],
    ids=["zip-bomb", "bomb-read-to-the-cap", "csv-of-a-million-rows"],
)
async def test_a_hostile_upload_does_not_stall_the_registry(
    registry, admin, settings, name, make, ratio_cap, expected
) -> None:
    data = make()
    assert len(data) < settings.upload_max_bytes
    if ratio_cap:
        settings.upload_max_compression_ratio = ratio_cap
    # Warm up: the first upload of a process imports the multipart parser.
    assert refusal(await upload(registry, admin, "empty.csv", b"")) == (422, "file", "is empty")
    idle = await healthz_delays(registry, lambda n: n >= 50)
    answer = asyncio.create_task(upload(registry, admin, name, data))
    during = await healthz_delays(registry, lambda n: answer.done())
    # Reading the file took seconds when it ran on the event loop, and /healthz waited all that
    # time; off the loop it answers about as fast as when idle. The slack absorbs a busy machine.
    assert max(during) < 20 * statistics.median(idle) + 0.5, (max(during), statistics.median(idle))
    assert refusal(await answer)[:2] == expected


async def test_reading_is_killed_at_the_time_limit(registry, admin, settings) -> None:
    settings.upload_max_compression_ratio = 1e9
    settings.upload_parse_timeout_s = 1
    # Without a dimension openpyxl scans the whole sheet (29 MB of XML, seconds) before the first row.
    response = await upload(registry, admin, "bomb.xlsx", bomb(600_000, dimension=False))
    assert refusal(response) == (413, "file", "took more than 1 s to read")
    assert upload_children() == 0  # killed, not left running


async def test_uploads_read_at_once_are_capped(registry, admin, settings) -> None:
    settings.upload_max_compression_ratio = 1e9
    data = bomb(150_000, dimension=False)  # about a second to read, then refused

    async def most_children_at_once(concurrency: int) -> int:
        settings.upload_parse_concurrency = concurrency
        uploads = asyncio.gather(*(upload(registry, admin, "bomb.xlsx", data) for _ in range(3)))
        most = 0
        while not uploads.done():
            most = max(most, upload_children())
            await asyncio.sleep(0.02)
        assert [r.status_code for r in await uploads] == [422] * 3
        return most

    assert await most_children_at_once(2) == 2
    assert await most_children_at_once(1) == 1


# ---- each cap, at the cap and one past it ---------------------------------------------------


async def test_records_cap_for_csv_and_xlsx(registry, admin, settings, tree) -> None:
    settings.import_max_records = 3
    over = (422, "records", "at most 3 records per batch (the file has more)")
    assert (await upload(registry, admin, "a.csv", csv_file([HEADER, *records(3)]))).json()["created"] == 3
    assert refusal(await upload(registry, admin, "a.csv", csv_file([HEADER, *records(4)]))) == over
    # Blank lines are not records.
    padded = csv_file([HEADER, *records(3)]) + b",,,\n\n"
    assert (await upload(registry, admin, "a.csv", padded)).json()["unchanged"] == 3

    assert (await upload(registry, admin, "a.xlsx", openpyxl_file([HEADER, *records(3)]))).json()["unchanged"] == 3
    declared = await upload(registry, admin, "a.xlsx", openpyxl_file([HEADER, *records(4)]))
    assert refusal(declared) == (422, "records", "at most 3 records per batch (the sheet declares 5 rows)")
    # No dimension, or one that lies: the rows themselves are counted.
    bare = workbook(sheet_xml([HEADER, *records(4)]))
    assert refusal(await upload(registry, admin, "a.xlsx", bare)) == over
    lying = workbook(sheet_xml([HEADER, *records(4)], dimension="A1:D2"))
    assert refusal(await upload(registry, admin, "a.xlsx", lying)) == over
    assert (await upload(registry, admin, "a.xlsx", workbook(sheet_xml([HEADER, *records(3)])))).status_code == 200


async def test_columns_cap(registry, admin, settings, tree) -> None:
    settings.upload_max_columns = 6
    six = [[*HEADER, "address", "employees"], *[[*r, "澧州大道1号", 30] for r in records(2)]]
    seven = [[*six[0], "formal_members"], *[[*r, 3] for r in six[1:]]]
    assert (await upload(registry, admin, "a.csv", csv_file(six))).json()["created"] == 2
    assert refusal(await upload(registry, admin, "a.csv", csv_file(seven))) == (
        422,
        "file",
        "row 1 has a value beyond column 6",
    )
    assert (await upload(registry, admin, "a.xlsx", openpyxl_file(six))).json()["unchanged"] == 2
    assert refusal(await upload(registry, admin, "a.xlsx", openpyxl_file(seven))) == (
        422,
        "file",
        "the sheet declares 7 columns; at most 6",
    )
    # A dimension that claims fewer columns does not hide the seventh.
    lying = workbook(sheet_xml(seven, dimension="A1:B3"))
    assert refusal(await upload(registry, admin, "a.xlsx", lying)) == (422, "file", "row 1 has a value beyond column 6")


async def test_unpacked_size_and_ratio_caps(registry, admin, settings, tree) -> None:
    data = openpyxl_file([HEADER, *records(2)])
    unpacked, packed = unpacked_and_packed(data)
    settings.upload_max_unpacked_bytes = unpacked
    assert (await upload(registry, admin, "a.xlsx", data)).json()["created"] == 2
    settings.upload_max_unpacked_bytes = unpacked - 1
    assert refusal(await upload(registry, admin, "a.xlsx", data)) == (
        413,
        "file",
        f"unpacks to {unpacked} bytes; at most {unpacked - 1}",
    )
    settings.upload_max_unpacked_bytes = unpacked
    settings.upload_max_compression_ratio = unpacked / packed
    assert (await upload(registry, admin, "a.xlsx", data)).json()["unchanged"] == 2
    settings.upload_max_compression_ratio = math.nextafter(unpacked / packed, 0)
    status, field, reason = refusal(await upload(registry, admin, "a.xlsx", data))
    assert (status, field) == (413, "file") and reason.startswith("unpacks ") and "times its size" in reason


async def test_zip_members_cap(registry, admin, settings, tree) -> None:
    data = workbook(sheet_xml([HEADER, *records(1)]), extra_members=5)
    members = len(zipfile.ZipFile(io.BytesIO(data)).infolist())
    settings.upload_max_zip_members = members
    assert (await upload(registry, admin, "a.xlsx", data)).json()["created"] == 1
    settings.upload_max_zip_members = members - 1
    assert refusal(await upload(registry, admin, "a.xlsx", data)) == (
        422,
        "file",
        f"holds {members} files; a workbook of at most {members - 1}",
    )


async def test_unreadable_files_are_a_422_naming_the_file(registry, admin, tree) -> None:
    long_field = csv_file([HEADER, [credit_code(1), "x" * 200_000, "enterprise", "430723100001"]])
    status, field, reason = refusal(await upload(registry, admin, "a.csv", long_field))
    assert (status, field) == (422, "file") and reason.startswith("line 2: field larger than field limit")
    assert refusal(await upload(registry, admin, "a.xlsx", b"PK\x03\x04 not a zip")) == (
        422,
        "file",
        "is not a readable .xlsx workbook",
    )
    assert refusal(await upload(registry, admin, "a.csv", b"\n ,\n")) == (422, "file", "is empty")
