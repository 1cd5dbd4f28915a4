"""The README's measurement schema is the contract with people who query InfluxDB: it is
held to prober/schema.py, the vocabulary the code writes with."""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path

import pytest

from prober import schema
from prober.measurement import Measurement

README = Path(__file__).resolve().parents[2] / "README.md"


def sections() -> dict[str, str]:
    text = README.read_text()
    body = text.split("\n## Measurement schema\n", 1)[1].split("\n## ", 1)[0]
    parts = re.split(r"^### (\S+)\n", body, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)
            if parts[i] in schema.MEASUREMENTS or re.fullmatch(r"[a-z_]+", parts[i])}


def table_rows(section: str) -> dict[str, str]:
    rows: dict[str, str] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) >= 4 and cells[0] not in ("field", "---"):
            for name in cells[0].split(","):
                rows[name.strip()] = line
    return rows


def tag_names(section: str) -> set[str]:
    line = section.split("- tags:", 1)[1].split("\n\n", 1)[0]
    return {m for m in re.findall(r"`([a-z_]+)`", line) if m not in _TAG_VALUES}


_TAG_VALUES = {v.value for e in (schema.AccessOutcome, schema.WebmailOutcome,
                                 schema.Direction) for v in e} | {
    "smtp", "imap", "narrowband", "broadband"}


def backticked(text: str) -> set[str]:
    return set(re.findall(r"`([a-z_]+)`", text))


def test_every_measurement_has_its_section() -> None:
    found = sections()
    for name in schema.MEASUREMENTS:
        assert name in found, f"README has no '### {name}' section"


@pytest.mark.parametrize("name", schema.MEASUREMENTS)
def test_the_example_line_parses_and_uses_only_documented_words(name: str) -> None:
    section = sections()[name]
    example = section.split("```\n", 1)[1].split("\n```", 1)[0].strip()
    m = Measurement.from_line(example)
    assert m.name == name
    assert schema.TAG_VANTAGE in m.tags
    documented_fields = set(table_rows(section))
    assert set(m.fields) <= documented_fields, set(m.fields) - documented_fields
    assert set(m.tags) <= tag_names(section), set(m.tags) - tag_names(section)


def test_roundtrip_outcomes_are_the_enum() -> None:
    row = table_rows(sections()[schema.MAIL_ROUNDTRIP])[schema.FIELD_OUTCOME]
    assert backticked(row) == {o.value for o in schema.RoundtripOutcome}


@pytest.mark.parametrize(("name", "enum"), [(schema.MAIL_ACCESS, schema.AccessOutcome),
                                            (schema.WEBMAIL_LOAD, schema.WebmailOutcome)])
def test_outcome_tags_are_the_enum(name: str, enum: type[StrEnum]) -> None:
    tags = sections()[name].split("- tags:", 1)[1].split("\n\n", 1)[0]
    listed = tags.split("`outcome`", 1)[1]
    assert {v for v in backticked(listed) if v != "outcome"} == {o.value for o in enum}


def test_error_classes_are_the_enum() -> None:
    known = {c.value for c in schema.ErrorClass}
    for name, section in sections().items():
        row = table_rows(section).get(schema.FIELD_ERROR_CLASS)
        if row is not None:
            assert backticked(row) <= known, (name, backticked(row) - known)
