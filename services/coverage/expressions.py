"""The subset of XLSForm (XPath) expressions the server evaluates: `constraint` and `relevant`.

What officials write in practice: comparisons of the answer (`.`) or of another question
(`${q}`) with numbers and quoted strings, joined by `and` / `or`, `not(…)`, parentheses, and
`selected(${q}, 'v')`, `count-selected(…)`, `string-length(…)`, `today()`. Anything else is
refused when the form is published, with the position, so a form the server cannot check is never
published; phones (ODK's JavaRosa among them) evaluate the same expressions the same way.

Values follow XPath 1.0: an unanswered question is the empty string; `=` compares numbers when one
side is a number, else text; `<`, `>`, `<=`, `>=` compare numbers (ISO dates compare as dates);
a yes/no answer is `'yes'` or `'no'`; a multiple choice is its values separated by spaces.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Any

MAX_LENGTH = 500
MAX_DEPTH = 20
_TOKEN = re.compile(
    r"""\s*(?:
      (?P<ref>\$\{(?P<name>[A-Za-z_][A-Za-z0-9_.-]*)\})
    | (?P<number>\d+(?:\.\d+)?|\.\d+)
    | (?P<string>'[^']*'|"[^"]*")
    | (?P<op><=|>=|!=|=|<|>)
    | (?P<punct>[(),])
    | (?P<self>\.)
    | (?P<word>[A-Za-z][A-Za-z-]*)
    )""",
    re.VERBOSE,
)
FUNCTIONS = {"not": 1, "selected": 2, "count-selected": 1, "string-length": 1, "today": 0}
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class ExpressionError(ValueError):
    """The expression is outside the subset (the message says where and why)."""


@dataclass(frozen=True)
class Expression:
    source: str
    tree: Any
    references: frozenset[str]
    uses_self: bool

    def evaluate(self, values: dict[str, Any], current: Any = None) -> bool:
        return _truthy(_eval(self.tree, values, current))


def _tokens(source: str) -> list[tuple[str, str, int]]:
    out, position = [], 0
    while position < len(source):
        if source[position:].strip() == "":
            break
        match = _TOKEN.match(source, position)
        if match is None or match.end() == position:
            raise ExpressionError(f"cannot read the expression at character {position + 1}: {source[position:][:20]!r}")
        kind = match.lastgroup if match.lastgroup != "name" else "ref"
        if match.group("ref"):
            kind, value = "ref", match.group("name")
        else:
            assert kind is not None
            value = match.group(kind)
        out.append((kind, value, match.start(kind if kind != "ref" else "ref") + 1))
        position = match.end()
    return out


class _Parser:
    def __init__(self, source: str) -> None:
        self.tokens = _tokens(source)
        self.at = 0
        self.depth = 0
        self.references: set[str] = set()
        self.uses_self = False

    def peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self, kind: str, value: str | None = None) -> tuple[str, str, int]:
        token = self.peek()
        if token is None or token[0] != kind or (value is not None and token[1] != value):
            where = f"at character {token[2]}" if token else "at the end"
            raise ExpressionError(f"expected {value or kind} {where}")
        self.at += 1
        return token

    def parse(self) -> Any:
        tree = self.expression()
        if (token := self.peek()) is not None:
            raise ExpressionError(f"unexpected {token[1]!r} at character {token[2]}")
        return tree

    def expression(self) -> Any:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExpressionError("the expression is nested too deeply")
        left = self.conjunction()
        while (token := self.peek()) is not None and token[:2] == ("word", "or"):
            self.at += 1
            left = ("or", left, self.conjunction())
        self.depth -= 1
        return left

    def conjunction(self) -> Any:
        left = self.comparison()
        while (token := self.peek()) is not None and token[:2] == ("word", "and"):
            self.at += 1
            left = ("and", left, self.comparison())
        return left

    def comparison(self) -> Any:
        left = self.operand()
        if (token := self.peek()) is not None and token[0] == "op":
            self.at += 1
            return ("cmp", token[1], left, self.operand())
        return left

    def operand(self) -> Any:
        token = self.peek()
        if token is None:
            raise ExpressionError("the expression ends too early")
        kind, value, position = token
        self.at += 1
        if kind == "number":
            return ("const", float(value))
        if kind == "string":
            return ("const", value[1:-1])
        if kind == "self":
            self.uses_self = True
            return ("self",)
        if kind == "ref":
            self.references.add(value)
            return ("ref", value)
        if kind == "punct" and value == "(":
            inner = self.expression()
            self.take("punct", ")")
            return inner
        if kind == "word" and value in FUNCTIONS:
            self.take("punct", "(")
            args = []
            if FUNCTIONS[value]:
                args.append(self.expression())
                for _ in range(FUNCTIONS[value] - 1):
                    self.take("punct", ",")
                    args.append(self.expression())
            self.take("punct", ")")
            return ("call", value, *args)
        if kind == "word":
            raise ExpressionError(
                f"{value!r} at character {position} is not supported here "
                f"(functions: {', '.join(sorted(FUNCTIONS))}; operators: and, or, =, !=, <, <=, >, >=)"
            )
        raise ExpressionError(f"unexpected {value!r} at character {position}")


@lru_cache(maxsize=4096)
def parse(source: str) -> Expression:
    """The expression, or `ExpressionError` saying why it is outside the subset."""
    if len(source) > MAX_LENGTH:
        raise ExpressionError(f"at most {MAX_LENGTH} characters")
    if not source.strip():
        raise ExpressionError("is empty")
    parser = _Parser(source)
    tree = parser.parse()
    return Expression(source, tree, frozenset(parser.references), parser.uses_self)


def as_xpath_value(value: Any) -> Any:
    """An answer as XPath sees it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, list | tuple):
        return " ".join(str(v) for v in value)
    if isinstance(value, dict):  # a GPS point: "lat lon"
        return f"{value.get('lat', '')} {value.get('lon', '')}".strip()
    return str(value)


def _number(value: Any) -> float:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, float):
        return value
    try:
        return float(str(value).strip())
    except ValueError:
        return math.nan


def _truthy(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, float):
        return not math.isnan(value) and value != 0
    return value != ""


def _compare(op: str, left: Any, right: Any) -> bool:
    if op in ("=", "!="):
        if isinstance(left, bool) or isinstance(right, bool):
            equal = _truthy(left) == _truthy(right)
        elif isinstance(left, float) or isinstance(right, float):
            equal = _number(left) == _number(right)
        else:
            equal = str(left) == str(right)
        return equal if op == "=" else not equal
    if isinstance(left, str) and isinstance(right, str) and _ISO_DATE.match(left) and _ISO_DATE.match(right):
        a: Any = left
        b: Any = right
    else:
        a, b = _number(left), _number(right)
        if math.isnan(a) or math.isnan(b):
            return False
    return bool({"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op])


def _eval(node: Any, values: dict[str, Any], current: Any) -> Any:
    kind = node[0]
    if kind == "const":
        return node[1]
    if kind == "self":
        return as_xpath_value(current)
    if kind == "ref":
        return as_xpath_value(values.get(node[1]))
    if kind == "and":
        return _truthy(_eval(node[1], values, current)) and _truthy(_eval(node[2], values, current))
    if kind == "or":
        return _truthy(_eval(node[1], values, current)) or _truthy(_eval(node[2], values, current))
    if kind == "cmp":
        return _compare(node[1], _eval(node[2], values, current), _eval(node[3], values, current))
    assert kind == "call"
    name, args = node[1], [_eval(a, values, current) for a in node[2:]]
    if name == "not":
        return not _truthy(args[0])
    if name == "selected":
        return str(args[1]) in str(args[0]).split()
    if name == "count-selected":
        return float(len(str(args[0]).split()))
    if name == "string-length":
        return float(len(str(args[0])))
    return date.today().isoformat()  # today()
