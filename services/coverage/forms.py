"""Campaign forms: the fixed observation fields the registry consumes plus the campaign's own
questions, versioned, checked on the server against exactly the version a visit names.

A form is data (`FormIn`): questions with a type, a Chinese label, `required`, choices, a
`constraint` and a `relevant` condition in the XLSForm expression subset of `expressions.py`.
A question named like a fixed field (`employees`, `formal_members`, `outcome`, …) does not add a
question: it sets the rules of that field, which the phone still sends as the visit's own field
(the registry reads it from there). Every other answer goes in the visit's `answers`.

Publishing never edits a version: it adds the next one, so visits made on an older version stay
valid against the version they name. Officials may also upload the form as an XLSForm workbook
(`xlsform.py` reads it with pyxform, the ODK reference library) and get row-level errors back.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from services.coverage.expressions import Expression, ExpressionError, parse
from services.coverage.models import Campaign, CampaignForm, StrictModel
from shared.auth import Caller
from shared.errors import ProblemError, invalid, not_found

QuestionType = Literal[
    "text", "integer", "decimal", "select_one", "select_multiple", "date", "yes_no", "photo", "geopoint"
]
QUESTION_TYPE_LABELS = {
    "text": "文本",
    "integer": "整数",
    "decimal": "小数",
    "select_one": "单选",
    "select_multiple": "多选",
    "date": "日期",
    "yes_no": "是/否",
    "photo": "照片",
    "geopoint": "定位",
}
NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
TEXT_MAX = 2000
MAX_QUESTIONS = 200


class Choice(StrictModel):
    value: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", examples=["yes"])]
    label: Annotated[str, Field(min_length=1, max_length=200, examples=["是"])]


class Question(StrictModel):
    name: Annotated[str, Field(pattern=NAME, examples=["union_members"])]
    type: QuestionType
    label: Annotated[str, Field(min_length=1, max_length=300, examples=["工会会员人数"])]
    hint: Annotated[str, Field(max_length=500)] | None = None
    required: bool = False
    choices: Annotated[list[Choice], Field(min_length=1, max_length=200)] | None = Field(
        default=None, description="the options of a select_one or select_multiple question"
    )
    constraint: Annotated[str, Field(max_length=500, examples=[". >= 0 and . <= 1000"])] | None = Field(
        default=None, description="must hold for the answer (`.`), in the XLSForm expression subset"
    )
    constraint_message: Annotated[str, Field(max_length=300)] | None = None
    relevant: Annotated[str, Field(max_length=500, examples=["${has_trade_union} = 'yes'"])] | None = Field(
        default=None, description="ask only when this holds (other questions as `${name}`)"
    )


class FormIn(StrictModel):
    title: Annotated[str, Field(min_length=1, max_length=200, examples=["迪庆州两新组织摸排表"])]
    questions: Annotated[list[Question], Field(min_length=1, max_length=MAX_QUESTIONS)]


class FixedField(BaseModel):
    name: str
    type: QuestionType
    label: str
    choices: list[Choice] | None = None


class FormPublic(BaseModel):
    campaign_id: uuid.UUID
    version: int
    title: str
    questions: list[Question]
    fixed_fields: list[FixedField] = Field(
        description="the observation fields every visit may carry as its own fields (a question of the same "
        "name sets their rules)"
    )
    source: str = Field(description="json | xlsform")
    published_by: str
    published_at: datetime


def _choices(pairs: Iterable[tuple[str, str]]) -> list[Choice]:
    return [Choice(value=v, label=label) for v, label in pairs]


OUTCOME_LABELS = {
    "operating": "正常经营",
    "zombie": "僵尸企业（无经营）",
    "closed": "已注销或关停",
    "relocated": "已迁出",
    "not_found": "查无此企",
    "refused": "拒绝配合",
}
POLITICAL_STATUS_LABELS = {
    "party_member": "中共党员",
    "probationary_member": "中共预备党员",
    "masses": "群众",
    "other": "其他",
}
# The observation a visit carries as its own fields (`VisitIn`), what the registry reads.
FIXED_FIELDS: dict[str, FixedField] = {
    f.name: f
    for f in (
        FixedField(name="outcome", type="select_one", label="走访结果", choices=_choices(OUTCOME_LABELS.items())),
        FixedField(name="employees", type="integer", label="从业人员数"),
        FixedField(name="formal_members", type="integer", label="正式党员数"),
        FixedField(name="probationary_members", type="integer", label="预备党员数"),
        FixedField(name="activists", type="integer", label="入党积极分子数"),
        FixedField(name="floating_members", type="integer", label="流动党员数"),
        FixedField(name="has_fixed_premises", type="yes_no", label="有固定经营场所"),
        FixedField(name="has_business_activity", type="yes_no", label="有经营活动"),
        FixedField(
            name="leader_political_status",
            type="select_one",
            label="主要负责人政治面貌",
            choices=_choices(POLITICAL_STATUS_LABELS.items()),
        ),
        FixedField(name="willing_to_establish", type="yes_no", label="有意愿建立党组织"),
        FixedField(name="notes", type="text", label="备注"),
        FixedField(name="location", type="geopoint", label="走访定位"),
    )
}


# ---- checking a form ------------------------------------------------------------------------


class FormProblems(Exception):
    """Every problem of a form at once: (field, reason)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{f}: {r}" for f, r in problems))
        self.problems = problems


def check_form(form: FormIn, where: dict[str, int] | None = None) -> None:
    """Raise `FormProblems` naming each problem. `where` maps a question's name to its row in an
    uploaded workbook, so a problem names the cell (`survey[7].constraint`)."""
    problems: list[tuple[str, str]] = []

    def at(i: int, question: Question, attribute: str) -> str:
        if where is not None:
            from services.coverage.xlsform import cell

            return cell(where, question.name, attribute)
        return f"questions[{i}].{attribute}"

    names: dict[str, int] = {}
    for i, q in enumerate(form.questions):
        if q.name in names:
            problems.append((at(i, q, "name"), f"{q.name!r} is used twice (first at question {names[q.name] + 1})"))
        names.setdefault(q.name, i)
        fixed = FIXED_FIELDS.get(q.name)
        if fixed is not None and q.type != fixed.type:
            problems.append((at(i, q, "type"), f"{q.name} is the fixed field {fixed.label}: its type is {fixed.type}"))
        if fixed is not None and q.choices is not None:
            problems.append((at(i, q, "choices"), f"{q.name} is a fixed field: its choices are fixed"))
        if fixed is None and q.type in ("select_one", "select_multiple") and not q.choices:
            problems.append((at(i, q, "choices"), "a select question needs its choices"))
        if q.type not in ("select_one", "select_multiple") and q.choices:
            problems.append((at(i, q, "choices"), "only select questions have choices"))
        if q.choices and len({c.value for c in q.choices}) != len(q.choices):
            problems.append((at(i, q, "choices"), "each choice value once"))
    for i, q in enumerate(form.questions):
        for attribute in ("constraint", "relevant"):
            source = getattr(q, attribute)
            if source is None:
                continue
            try:
                expression = parse(source)
            except ExpressionError as exc:
                problems.append((at(i, q, attribute), str(exc)))
                continue
            unknown = sorted(r for r in expression.references if r not in names and r not in FIXED_FIELDS)
            if unknown:
                problems.append((at(i, q, attribute), f"names no question: {', '.join(unknown)}"))
            if attribute == "relevant" and expression.uses_self:
                problems.append((at(i, q, attribute), "a condition names other questions (${name}), not '.'"))
            if attribute == "relevant" and q.name in expression.references:
                problems.append((at(i, q, attribute), "a question cannot depend on itself"))
    if problems:
        raise FormProblems(problems)


def _problem(problems: list[tuple[str, str]]) -> ProblemError:
    return ProblemError(
        422,
        f"the form has {len(problems)} problem(s); nothing was published",
        code="validation-error",
        title="Request validation failed",
        errors=[{"field": f, "reason": r} for f, r in problems],
    )


# ---- publishing and reading ------------------------------------------------------------------


async def publish(
    session: AsyncSession,
    *,
    caller: Caller,
    campaign: Campaign,
    form: FormIn,
    source: str = "json",
    where: dict[str, int] | None = None,
) -> CampaignForm:
    """The campaign's next form version (the campaign row is locked by the caller)."""
    try:
        check_form(form, where)
    except FormProblems as exc:
        raise _problem(exc.problems) from None
    latest = await session.execute(
        text("SELECT coalesce(max(version), 0) FROM campaign_form WHERE campaign_id = :c"), {"c": campaign.id}
    )
    row = CampaignForm(
        campaign_id=campaign.id,
        version=int(latest.scalar_one()) + 1,
        region_code=campaign.region_code,
        title=form.title,
        definition=form.model_dump(mode="json", exclude_none=True),
        source=source,
        published_by=caller.label,
        published_at=datetime.now(UTC),
    )
    session.add(row)
    await session.flush()
    return row


async def version_of(session: AsyncSession, campaign_id: uuid.UUID, version: int | None) -> CampaignForm | None:
    query = select(CampaignForm).where(col(CampaignForm.campaign_id) == campaign_id)
    if version is not None:
        query = query.where(col(CampaignForm.version) == version)
    found = await session.execute(query.order_by(col(CampaignForm.version).desc()).limit(1))
    return found.scalars().first()


async def get_public(session: AsyncSession, campaign: Campaign, version: int | None) -> FormPublic:
    row = await version_of(session, campaign.id, version)
    if row is None:
        raise not_found("form version" if version is not None else "form (the campaign has none yet)")
    return public(row)


def public(row: CampaignForm) -> FormPublic:
    return FormPublic(
        campaign_id=row.campaign_id,
        version=row.version,
        title=row.title,
        questions=[Question.model_validate(q) for q in row.definition["questions"]],
        fixed_fields=list(FIXED_FIELDS.values()),
        source=row.source,
        published_by=row.published_by,
        published_at=row.published_at,
    )


# ---- checking a visit's answers ---------------------------------------------------------------


class CompiledForm:
    """A form version ready to check visits: questions with their parsed expressions."""

    def __init__(self, campaign_id: uuid.UUID, version: int, definition: dict[str, Any]) -> None:
        self.campaign_id, self.version = campaign_id, version
        self.questions = [Question.model_validate(q) for q in definition["questions"]]
        self.names = {q.name for q in self.questions}
        self.constraints: dict[str, Expression] = {}
        self.conditions: dict[str, Expression] = {}
        for q in self.questions:
            if q.constraint:
                self.constraints[q.name] = parse(q.constraint)
            if q.relevant:
                self.conditions[q.name] = parse(q.relevant)

    def check(self, fixed: dict[str, Any], answers: dict[str, Any]) -> list[dict[str, str]]:
        """Each failing answer with its own reason (an empty list: the visit fits the form)."""
        reasons: list[dict[str, str]] = []
        for name in answers:
            if name in FIXED_FIELDS:
                reasons.append({"field": f"answers.{name}", "reason": f"send {name} as the visit's own field"})
            elif name not in self.names:
                reasons.append({"field": f"answers.{name}", "reason": f"not a question of form version {self.version}"})
        values = {**{k: v for k, v in answers.items() if k not in FIXED_FIELDS}, **fixed}
        for q in self.questions:
            is_fixed = q.name in FIXED_FIELDS
            field = q.name if is_fixed else f"answers.{q.name}"
            value = values.get(q.name)
            condition = self.conditions.get(q.name)
            if condition is not None and not condition.evaluate(values):
                if value is not None and not is_fixed:
                    reasons.append({"field": field, "reason": f"is not asked unless {q.relevant}"})
                continue
            if value is None or value == "" or value == []:
                if q.required:
                    reasons.append({"field": field, "reason": "is required"})
                continue
            if not is_fixed and (problem := type_problem(q, value)) is not None:
                reasons.append({"field": field, "reason": problem})
                continue
            constraint = self.constraints.get(q.name)
            if constraint is not None and not constraint.evaluate(values, value):
                reasons.append({"field": field, "reason": q.constraint_message or f"must satisfy {q.constraint}"})
        return reasons


def type_problem(q: Question, value: Any) -> str | None:
    """Why an answer does not fit its question's type, or None."""
    if q.type == "text":
        if not isinstance(value, str):
            return "must be text"
        return f"at most {TEXT_MAX} characters" if len(value) > TEXT_MAX else None
    if q.type == "integer":
        ok = isinstance(value, int) and not isinstance(value, bool) and abs(value) <= 10**12
        return None if ok else "must be a whole number"
    if q.type == "decimal":
        ok = isinstance(value, int | float) and not isinstance(value, bool) and abs(value) <= 10**12
        return None if ok and value == value else "must be a number"
    if q.type in ("select_one", "select_multiple"):
        allowed = {c.value for c in q.choices or []}
        if q.type == "select_one":
            return (
                None if isinstance(value, str) and value in allowed else f"must be one of {', '.join(sorted(allowed))}"
            )
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return "must be a list of choices"
        wrong = sorted({v for v in value if v not in allowed})
        if wrong or len(set(value)) != len(value):
            return f"choose each of {', '.join(sorted(allowed))} at most once"
        return None
    if q.type == "date":
        try:
            date.fromisoformat(value)
        except (TypeError, ValueError):
            return "must be a date (YYYY-MM-DD)"
        return None if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value) else "must be a date (YYYY-MM-DD)"
    if q.type == "yes_no":
        return None if isinstance(value, bool) else "must be true or false"
    if q.type == "photo":
        ok = isinstance(value, str) and 0 < len(value) <= 200
        return None if ok else "must be the file name of the photo uploaded for this visit"
    # geopoint
    if not isinstance(value, dict) or set(value) - {"lat", "lon", "accuracy_m"} or not {"lat", "lon"} <= set(value):
        return "must be {lat, lon} (and accuracy_m)"
    numbers = [value[k] for k in value]
    if not all(isinstance(n, int | float) and not isinstance(n, bool) for n in numbers):
        return "must be {lat, lon} as numbers"
    if not (-90 <= value["lat"] <= 90 and -180 <= value["lon"] <= 180):
        return "lat must be within ±90 and lon within ±180"
    return None


_compiled: dict[tuple[uuid.UUID, int], CompiledForm] = {}


async def compiled(
    session: AsyncSession, keys: set[tuple[uuid.UUID, int]]
) -> dict[tuple[uuid.UUID, int], CompiledForm]:
    """The form versions a batch names, parsed once per process (a version never changes)."""
    missing = [k for k in keys if k not in _compiled]
    if missing:
        found = await session.execute(
            text(
                "SELECT campaign_id, version, definition FROM campaign_form "
                "WHERE (campaign_id, version) IN (SELECT * FROM unnest(CAST(:c AS uuid[]), CAST(:v AS int[])))"
            ),
            {"c": [k[0] for k in missing], "v": [k[1] for k in missing]},
        )
        for r in found:
            if len(_compiled) > 1000:
                _compiled.clear()
            _compiled[(r.campaign_id, r.version)] = CompiledForm(r.campaign_id, r.version, r.definition)
    return {k: _compiled[k] for k in keys if k in _compiled}


async def latest_versions(session: AsyncSession, campaign_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, int]:
    ids = list(set(campaign_ids))
    if not ids:
        return {}
    found = await session.execute(
        text("SELECT campaign_id, max(version) AS v FROM campaign_form WHERE campaign_id = ANY(:ids) GROUP BY 1"),
        {"ids": ids},
    )
    return {r.campaign_id: int(r.v) for r in found}


def problem_for_upload(problems: list[tuple[str, str]]) -> ProblemError:
    return _problem(problems)


def from_workbook(read: dict[str, Any]) -> tuple[FormIn, dict[str, int]]:
    """The form an XLSForm workbook holds (`xlsform.read`), or a 422 naming every problem's cell:
    what the conversion refused, what `FormIn` refuses, and the server's checks of the rest."""
    where = {str(k): int(v) for k, v in read["where"].items()}
    problems = [(str(f), str(r)) for f, r in read["structure"]]
    try:
        form = FormIn.model_validate(read["form"])
    except ValidationError as exc:
        raise _problem(problems + upload_reasons(exc, read["form"], where)) from None
    try:
        check_form(form, where)
    except FormProblems as exc:
        problems += exc.problems
    if problems:
        raise _problem(sorted(set(problems), key=problems.index))
    return form, where


def upload_reasons(exc: ValidationError, form: dict[str, Any], where: dict[str, int]) -> list[tuple[str, str]]:
    """A workbook's questions that do not fit `FormIn`, each named by its cell."""
    from services.coverage.xlsform import cell

    out = []
    for error in exc.errors():
        loc = error["loc"]
        reason = str(error["msg"]).removeprefix("Value error, ")
        if len(loc) >= 2 and loc[0] == "questions" and isinstance(loc[1], int) and loc[1] < len(form["questions"]):
            name = str(form["questions"][loc[1]].get("name", ""))
            column = str(loc[2]) if len(loc) > 2 else "name"
            out.append((cell({k: int(v) for k, v in where.items()}, name, column), reason))
        elif loc and loc[0] == "title":
            out.append(("settings.form_title", reason))
        else:
            out.append(("file", reason))
    return out


def invalid_version(version: int) -> ProblemError:
    return invalid("version", f"the campaign has no form version {version}")


# ---- answers: queryable and exportable ----------------------------------------------------------

BEIJING = timezone(timedelta(hours=8))  # officials read times in Beijing time
REVIEW_LABELS = {"pending": "待审核", "verified": "已核实", "rejected": "已退回"}
_ANSWERS = """
  SELECT v.id, v.organization_id, coalesce(o.name, v.new_organization ->> 'name') AS organization_name,
         coalesce(o.credit_code, v.new_organization ->> 'credit_code') AS credit_code, v.region_code,
         v.visited_at, v.form_version, v.review_status, v.observation, v.answers, v.flags
  FROM visit v LEFT JOIN organization o ON o.id = v.organization_id
  WHERE v.campaign_id = :c AND v.form_version IS NOT NULL"""


class AnswerRow(BaseModel):
    visit_id: uuid.UUID
    organization_id: uuid.UUID | None
    organization_name: str | None
    credit_code: str | None
    region_code: str
    visited_at: datetime
    form_version: int
    review_status: str
    observation: dict[str, Any] = Field(description="the fixed observation fields")
    answers: dict[str, Any] = Field(description="answers to the campaign's questions, by question name")


def _answer_row(r: Any) -> AnswerRow:
    return AnswerRow(
        visit_id=r.id,
        organization_id=r.organization_id,
        organization_name=r.organization_name,
        credit_code=r.credit_code,
        region_code=r.region_code,
        visited_at=r.visited_at,
        form_version=r.form_version,
        review_status=r.review_status,
        observation=r.observation,
        answers=r.answers or {},
    )


async def answers_page(
    session: AsyncSession, *, campaign: Campaign, form_version: int | None, after: uuid.UUID | None, limit: int
) -> list[AnswerRow]:
    sql, params = _ANSWERS, {"c": campaign.id, "n": limit + 1}
    if form_version is not None:
        sql += " AND v.form_version = :fv"
        params["fv"] = form_version
    if after is not None:
        sql += " AND v.id > :after"
        params["after"] = after
    found = await session.execute(text(sql + " ORDER BY v.id LIMIT :n"), params)
    return [_answer_row(r) for r in found]


def _shown(question: Question | FixedField, value: Any) -> Any:
    """An answer as an official reads it: choice labels, 是/否, a point as "lat, lon"."""
    if value is None:
        return None
    labels = {c.value: c.label for c in question.choices or []}
    if question.type == "yes_no" and isinstance(value, bool):
        return "是" if value else "否"
    if question.type == "select_one":
        return labels.get(str(value), str(value))
    if question.type == "select_multiple" and isinstance(value, list):
        return "、".join(labels.get(str(v), str(v)) for v in value)
    if question.type == "geopoint" and isinstance(value, dict):
        return f"{value.get('lat')}, {value.get('lon')}"
    if isinstance(value, dict | list):
        return str(value)
    return value


async def answers_xlsx(session: AsyncSession, *, campaign: Campaign) -> bytes:
    """One row per visit made on a form, the questions as Chinese headers (every version's, the
    latest's order first), text cells made safe."""
    import io

    from openpyxl import Workbook
    from openpyxl.styles import Font

    from shared.spreadsheets import safe_row

    found = await session.execute(
        select(CampaignForm)
        .where(col(CampaignForm.campaign_id) == campaign.id)
        .order_by(col(CampaignForm.version).desc())
    )
    questions: dict[str, Question] = {}
    for row in found.scalars():
        for q in row.definition["questions"]:
            if q["name"] not in FIXED_FIELDS:
                questions.setdefault(q["name"], Question.model_validate(q))
    fixed = [f for f in FIXED_FIELDS.values() if f.name != "location"]
    header = ["走访记录编号", "组织名称", "统一社会信用代码", "区划代码", "走访时间", "表单版本", "审核状态"]
    header += [f.label for f in fixed] + [q.label for q in questions.values()] + ["提示"]
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("走访答卷")
    sheet.freeze_panes = "A2"
    bold = Font(bold=True)
    from openpyxl.cell import WriteOnlyCell

    cells = []
    for title in header:
        cell = WriteOnlyCell(sheet, value=title)
        cell.font = bold
        cells.append(cell)
    sheet.append(cells)
    rows = await session.execute(text(_ANSWERS + " ORDER BY v.visited_at, v.id"), {"c": campaign.id})
    for r in rows:
        answers = r.answers or {}
        values: list[Any] = [
            str(r.id),
            r.organization_name,
            r.credit_code,
            r.region_code,
            r.visited_at.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M"),
            r.form_version,
            REVIEW_LABELS.get(r.review_status, r.review_status),
        ]
        values += [_shown(f, r.observation.get(f.name)) for f in fixed]
        values += [_shown(q, answers.get(name)) for name, q in questions.items()]
        values.append("；".join(f["reason"] for f in r.flags or []) or None)
        sheet.append(safe_row(values))
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()
