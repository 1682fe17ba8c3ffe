"""Loading what the caller may see is written once (shared/visible.py), not again in each service."""

from __future__ import annotations

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]
# A jurisdiction check followed, within two lines, by a 404 or a refusal note: a hand-written copy
# of shared.visible.load / check / check_reference.
BY_HAND = re.compile(r"can_see\(.*\n(.*\n)?.*(not_found\(|refusals\.suspect\(|ProblemError\(404)")


def test_no_service_writes_its_own_get_or_404() -> None:
    found = [
        str(path.relative_to(ROOT))
        for folder in ("services", "shared")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if path.name not in ("visible.py", "auth.py") and BY_HAND.search(path.read_text())
    ]
    assert found == [], "use shared.visible (load, load_row, check, check_reference) instead"
