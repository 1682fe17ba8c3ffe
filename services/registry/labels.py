"""Chinese labels of registry columns and values, for spreadsheets officials read and fill in."""

from __future__ import annotations

from shared.rules import KIND_LABELS

COLUMN_LABELS: dict[str, str] = {
    "credit_code": "统一社会信用代码",
    "name": "名称",
    "kind": "类型",
    "region_code": "所属区划代码",
    "area_id": "所属园区商圈楼宇编号",
    "industry_code": "行业代码",
    "registration_authority": "登记机关",
    "sector": "主管行业",
    "address": "地址",
    "status": "经营状态",
    "status_reason": "状态变更原因",
    "employees": "从业人员数",
    "has_fixed_premises": "有固定经营场所",
    "has_business_activity": "有生产经营活动",
    "social_org_level": "社会组织登记级别",
    "formal_members": "正式党员数",
    "probationary_members": "预备党员数",
    "activists": "入党积极分子数",
    "floating_members": "流动党员数",
    "has_trade_union": "建立工会",
    "has_youth_league": "建立共青团",
    "leader_political_status": "负责人政治面貌",
    "investor_is_party_member": "出资人是党员",
    "charter_includes_party_building": "党建写入章程",
}

VALUE_LABELS: dict[str, dict[str, str]] = {
    "kind": KIND_LABELS,
    "status": {
        "active": "正常经营",
        "zombie": "僵尸企业",
        "closed": "停业",
        "deregistered": "注销",
        "relocated": "迁出",
    },
    "registration_authority": {
        "market_regulation": "市场监管",
        "civil_affairs": "民政",
        "justice": "司法行政",
        "education": "教育",
        "health": "卫生健康",
        "other": "其他",
    },
    "sector": {
        "private_school": "民办学校",
        "private_hospital": "民办医院",
        "law_firm": "律师事务所",
        "accounting_firm": "会计师事务所",
    },
    "social_org_level": {"national": "全国性", "province": "省级", "city": "市级", "county": "县级"},
    "leader_political_status": {
        "party_member": "中共党员",
        "probationary_member": "中共预备党员",
        "masses": "群众",
        "other": "其他",
    },
    "formation": {
        "single": "单独组建",
        "joint": "联合组建",
        "industry": "行业统建",
        "regional": "区域联建",
        "affiliated": "挂靠组建",
    },
    "level": {"committee": "党委", "general_branch": "党总支", "branch": "党支部"},
}
# Words partners' spreadsheets use for the same values.
VALUE_SYNONYMS: dict[str, dict[str, str]] = {
    "kind": {"企业": "enterprise", "民营企业": "enterprise", "个体户": "individual_business"},
    "status": {
        "存续": "active",
        "在业": "active",
        "正常": "active",
        "空壳": "zombie",
        "名存实亡": "zombie",
        "吊销": "deregistered",
        "已注销": "deregistered",
        "迁移": "relocated",
    },
}
TRUE_WORDS = frozenset({"是", "有", "true", "yes", "y", "1", "√"})
FALSE_WORDS = frozenset({"否", "无", "没有", "false", "no", "n", "0", "×"})


def header_to_field() -> dict[str, str]:
    """Accept either the English field name or its Chinese label as a column header."""
    mapping = {key: key for key in COLUMN_LABELS}
    mapping.update({label: key for key, label in COLUMN_LABELS.items()})
    return mapping


def value_to_code(field: str) -> dict[str, str]:
    mapping = {label: code for code, label in VALUE_LABELS.get(field, {}).items()}
    mapping.update(VALUE_SYNONYMS.get(field, {}))
    return mapping


def label(field: str, value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "是" if value else "否"
    return VALUE_LABELS.get(field, {}).get(str(value), value)
