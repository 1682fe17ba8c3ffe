"""The README documents every setting and every event type the code has."""

from __future__ import annotations

import re
from pathlib import Path

from shared.events import CATALOG
from shared.settings import Settings

README = (Path(__file__).parent.parent / "README.md").read_text()


def test_every_setting_is_in_the_configuration_table() -> None:
    documented = set(re.findall(r"^\| `(LIANGXIN_[A-Z0-9_]+)` \|", README, flags=re.M))
    expected = {f"LIANGXIN_{name.upper()}" for name in Settings.model_fields}
    assert expected - documented == set(), "undocumented settings"
    assert documented - expected == set(), "documented settings that do not exist"


def test_every_event_type_is_in_the_catalog() -> None:
    documented = set(re.findall(r"^\| `([a-z]+\.[a-z_]+\.[a-z_]+)` \| (\w+) \|", README, flags=re.M))
    assert documented == {(t, spec.producer) for t, spec in CATALOG.items()}


def test_two_setup_commands() -> None:
    commands = re.findall(r"```sh\n(.+?)\n```", README)
    assert len(commands) == 2
    assert commands[0].endswith("liangxin dev --demo") and commands[1].endswith("pytest")


def test_the_homes_of_the_rules_exist() -> None:
    """Every name "Where the rules live" gives is defined where it says."""
    import importlib

    section = README.split("### Where the rules live", 1)[1].split("\n## ", 1)[0]
    named = 0
    for line in section.splitlines():
        if not line.startswith("| ") or "`" not in line:
            continue
        home = line.rsplit("|", 2)[1]
        found = re.match(r"\s*`((?:shared|services)/[\w/]+)\.py`:?(.*)", home)
        if found is None:
            continue
        module = importlib.import_module(found.group(1).replace("/", "."))
        for name in re.findall(r"`(\w+)`", found.group(2).split("(", 1)[0]):
            assert hasattr(module, name), f"{found.group(1)}.py has no {name}"
            named += 1
    assert named >= 20
