"""The README documents every setting and every event type the code has."""

from __future__ import annotations

import re
from pathlib import Path

from shared.events import CATALOG
from shared.settings import Settings

README = (Path(__file__).parent.parent / "README.md").read_text()


def test_every_setting_is_in_the_configuration_table() -> None:
    documented = set(re.findall(r"^\| `(LIANGXIN_[A-Z_]+)` \|", README, flags=re.M))
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
