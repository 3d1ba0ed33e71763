"""Docs and config agree: the defaults the docs state are read back from the schemas (issue 24: deploy.md
said the watchdog was 150 ms while config and pre-flight used 180 ms)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from hardware import config as hardware_config
from hardware.deploy.command import DeployConfig
from robolearn.agents.policy import ActingConfig
from robolearn.roles.config import ActorConfig, LearnerConfig
from robolearn.replay.config import ServerConfig
from robolearn.transport.config import TransportConfig

DOCS = Path(__file__).resolve().parent.parent / "docs"
SCHEMAS = [ServerConfig, TransportConfig, ActorConfig, LearnerConfig, DeployConfig, ActingConfig,
           *(c for c in vars(hardware_config).values() if dataclasses.is_dataclass(c))]


def defaults(name: str) -> set:
    found = set()
    for schema in SCHEMAS:
        for f in dataclasses.fields(schema):
            if f.name == name and f.default is not dataclasses.MISSING:
                found.add(f.default)
    return found


# "`watchdog_timeout_s` (180 ms)", "`command_hold_s` (200 ms)": a key, then its default in parentheses.
NAMED_VALUE = re.compile(r"`(?:[a-z_.]+\.)?([a-z_]+)` \((\d+(?:\.\d+)?) (ms|s)\)")


@pytest.mark.parametrize("doc", ["deploy.md", "hardware.md", "remote.md"])
def test_every_default_a_doc_states_in_seconds_is_the_schemas(doc):
    text = (DOCS / doc).read_text()
    stated = NAMED_VALUE.findall(text)
    for key, value, unit in stated:
        seconds = float(value) / (1000 if unit == "ms" else 1)
        known = defaults(key)
        if not known:
            continue  # not a config key (a measured figure named after one)
        assert any(abs(float(d) - seconds) < 1e-9 for d in known if isinstance(d, (int, float))), \
            f"docs/{doc} says `{key}` ({value} {unit}); the schemas' default is {sorted(known)}"


def test_the_replay_servers_limits_table_is_its_defaults():
    text = (DOCS / "remote.md").read_text()
    table = text[text.index("### Limits"):]
    rows = re.findall(r"^\| (`[a-z_]+`(?: / `[a-z_]+`)*) \| ([\d. /]+) \|", table, re.MULTILINE)
    assert len(rows) >= 7
    for keys, values in rows:
        for key, value in zip(re.findall(r"`([a-z_]+)`", keys), values.split("/")):
            assert float(getattr(ServerConfig, key)) == float(value.strip()), f"docs/remote.md's limits table: {key} = {value}"


def test_the_watchdog_the_docs_describe_is_the_configured_one():
    text = (DOCS / "deploy.md").read_text()
    timeout_ms = round(hardware_config.SafetyConfig.watchdog_timeout_s * 1000)
    assert f"`watchdog_timeout_s` ({timeout_ms} ms)" in text
    assert "150 ms" not in text.split("## The watchdog rule")[0]  # the checklist's old figure
