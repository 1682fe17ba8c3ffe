"""Reports officials open: the coverage workbook and the trend chart."""

from __future__ import annotations

import functools
import io
from contextlib import AbstractContextManager
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import matplotlib
from openpyxl import Workbook
from openpyxl.styles import Alignment, Font
from openpyxl.utils import get_column_letter

from services.coverage.models import CoverageHistory, CoverageReport, Figures
from shared import rules
from shared.spreadsheets import safe_cell, safe_row

if TYPE_CHECKING:
    from matplotlib.figure import Figure

KIND_LABELS: dict[str | None, str] = {None: "全部"} | dict(rules.KIND_LABELS)
COLUMNS: list[tuple[str, str, bool]] = [  # (header, figure, is a rate)
    ("纳入摸排范围数", "in_scope", False),
    ("组织覆盖数", "org_covered", False),
    ("组织覆盖率", "org_coverage_rate", True),
    ("工作覆盖数", "work_covered", False),
    ("工作覆盖率", "work_coverage_rate", True),
    (f"应单独组建数（{rules.SINGLE_MIN_FORMAL_MEMBERS}名以上正式党员）", "single_formation_eligible", False),
    ("单独组建数", "single_formed", False),
    ("单独组建率", "single_formation_rate", True),
    ("党组织数", "party_orgs", False),
    ("书记进入管理层比例", "secretary_in_management_rate", True),
    ("书记出资人一肩挑比例", "secretary_is_investor_rate", True),
    ("党建写入章程比例", "charter_rate", True),
]


def _value(figures: Figures, name: str) -> Any:
    value = getattr(figures, name)
    return value.total if name == "party_orgs" else value


def coverage_xlsx(report: CoverageReport) -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = "覆盖情况"
    sheet.append(
        [safe_cell(f"{report.region.name}两新组织党建“两个覆盖”情况（{KIND_LABELS.get(report.kind, report.kind)}）")]
    )
    sheet["A1"].font = Font(bold=True, size=14)
    stamp = (
        report.as_of.isoformat()
        if report.as_of
        else (report.computed_at.strftime("%Y-%m-%d %H:%M") if report.computed_at else "")
    )
    note = "（有变更尚未计入，数据待更新）" if report.stale else ""
    sheet.append([f"数据时间：{stamp}{note}"])
    header = ["区划代码", "区划名称", *(h for h, _, _ in COLUMNS)]
    sheet.append(header)
    for cell in sheet[3]:
        cell.font = Font(bold=True)
        cell.alignment = Alignment(wrap_text=True, vertical="center")
    rows: list[tuple[str, str, Figures]] = [(c.region.code, c.region.name, c) for c in report.children]
    rows.append((report.region.code, "合计", report.total))
    for code, name, figures in rows:
        sheet.append(safe_row([code, name, *(_value(figures, f) for _, f, _ in COLUMNS)]))
        line = sheet.max_row
        for offset, (_, _, is_rate) in enumerate(COLUMNS, start=3):
            if is_rate:
                cell = sheet.cell(row=line, column=offset)
                cell.number_format = "0.00%"
                if cell.value is None:
                    cell.value = "—"
                    cell.alignment = Alignment(horizontal="right")
    for cell in sheet[sheet.max_row]:
        cell.font = Font(bold=True)
    sheet.freeze_panes = "C4"
    sheet.column_dimensions["A"].width = 15
    sheet.column_dimensions["B"].width = 16
    for i in range(3, len(header) + 1):
        sheet.column_dimensions[get_column_letter(i)].width = 14
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


@functools.cache
def cjk_font() -> str:
    """The family name of the Chinese font that installs with the project (Noto Sans SC, SIL Open
    Font License, from the `pylopdf-fonts-zh-cn` package): a fresh machine has no CJK font of its
    own, and without one every Chinese label would come out as empty boxes. Registered with
    matplotlib once per process."""
    from matplotlib import font_manager
    from pylopdf_fonts_zh_cn import sans_path

    path = str(sans_path())
    if path not in {f.fname for f in font_manager.fontManager.ttflist}:
        font_manager.fontManager.addfont(path)
    return str(font_manager.FontProperties(fname=path).get_name())


def chinese_text() -> AbstractContextManager[Any]:
    """Text made inside uses the bundled CJK font (tick labels are made while drawing: draw inside too)."""
    return matplotlib.rc_context({"font.family": [cjk_font(), "DejaVu Sans"]})


def trend_title(history: CoverageHistory) -> str:
    return f"{history.region.name}“两个覆盖”趋势（{KIND_LABELS.get(history.kind, history.kind)}）"


def trend_figure(history: CoverageHistory) -> Figure:
    """Both rates over the snapshots, labelled in Chinese; the title names the region."""
    from matplotlib.dates import DateFormatter
    from matplotlib.figure import Figure
    from matplotlib.ticker import PercentFormatter

    dates: list[Any] = [p.date for p in history.points]
    org = [p.org_coverage_rate for p in history.points]
    work = [p.work_coverage_rate for p in history.points]
    with chinese_text():
        # A Figure of its own, not pyplot's: nothing global to share between concurrent requests.
        fig = Figure(figsize=(9, 4.8), dpi=110)
        ax = fig.subplots()
        ax.plot(dates, [v if v is not None else float("nan") for v in org], marker="o", label="组织覆盖率")
        ax.plot(dates, [v if v is not None else float("nan") for v in work], marker="s", label="工作覆盖率")
        ax.set_title(trend_title(history))
        ax.set_xlabel("快照日期")
        ax.set_ylabel("覆盖率")
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.set_ylim(0, 1.05)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right")
        ax.xaxis.set_major_formatter(DateFormatter("%Y-%m-%d"))
        if len(set(dates)) == 1:  # day one: a week around the only snapshot, not years of empty axis
            ax.set_xlim(dates[0] - timedelta(days=3), dates[0] + timedelta(days=3))
        if not dates:
            ax.text(0.5, 0.5, "暂无快照：请发起一次重新计算", ha="center", va="center", transform=ax.transAxes)
        fig.autofmt_xdate()
    return fig


def trend_png(history: CoverageHistory) -> bytes:
    fig = trend_figure(history)
    out = io.BytesIO()
    with chinese_text():
        fig.savefig(out, format="png", bbox_inches="tight")
    return out.getvalue()
