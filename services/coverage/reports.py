"""Reports officials open: the coverage workbook and the trend chart."""

from __future__ import annotations

import io
from typing import Any

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font
from openpyxl.utils import get_column_letter

from services.coverage.models import CoverageHistory, CoverageReport, Figures

KIND_LABELS = {None: "全部", "enterprise": "非公有制企业", "social_org": "社会组织"}
COLUMNS: list[tuple[str, str, bool]] = [  # (header, figure, is a rate)
    ("纳入摸排范围数", "in_scope", False),
    ("组织覆盖数", "org_covered", False),
    ("组织覆盖率", "org_coverage_rate", True),
    ("工作覆盖数", "work_covered", False),
    ("工作覆盖率", "work_coverage_rate", True),
    ("应单独组建数（3名以上正式党员）", "single_formation_eligible", False),
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
    sheet.append([f"{report.region.name}两新组织党建“两个覆盖”情况（{KIND_LABELS.get(report.kind, report.kind)}）"])
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
        sheet.append([code, name, *(_value(figures, f) for _, f, _ in COLUMNS)])
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


def _cjk_font() -> str | None:
    from matplotlib import font_manager

    wanted = (
        "Noto Sans CJK SC",
        "Noto Sans SC",
        "Source Han Sans SC",
        "WenQuanYi Micro Hei",
        "SimHei",
        "Microsoft YaHei",
        "PingFang SC",
    )
    available = {f.name for f in font_manager.fontManager.ttflist}
    return next((name for name in wanted if name in available), None)


def trend_png(history: CoverageHistory) -> bytes:
    """Both rates over the snapshots; Chinese labels when a CJK font is installed, English otherwise."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.ticker import PercentFormatter

    font = _cjk_font()
    if font:
        plt.rcParams["font.sans-serif"] = [font, "DejaVu Sans"]
        title = f"{history.region.name} 两个覆盖趋势"
        labels = ("组织覆盖率", "工作覆盖率", "快照日期", "覆盖率")
    else:
        title = f"Coverage trend, region {history.region.code}"
        labels = ("Organization coverage", "Work coverage", "Snapshot date", "Rate")
    dates: list[Any] = [p.date for p in history.points]
    org = [p.org_coverage_rate for p in history.points]
    work = [p.work_coverage_rate for p in history.points]
    fig, ax = plt.subplots(figsize=(9, 4.8), dpi=110)
    ax.plot(dates, [v if v is not None else float("nan") for v in org], marker="o", label=labels[0])
    ax.plot(dates, [v if v is not None else float("nan") for v in work], marker="s", label=labels[1])
    ax.set_title(title)
    ax.set_xlabel(labels[2])
    ax.set_ylabel(labels[3])
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_ylim(0, 1.05)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    if not dates:
        ax.text(
            0.5, 0.5, "no snapshots yet" if not font else "暂无快照", ha="center", va="center", transform=ax.transAxes
        )
    fig.autofmt_xdate()
    out = io.BytesIO()
    fig.savefig(out, format="png", bbox_inches="tight")
    plt.close(fig)
    return out.getvalue()
