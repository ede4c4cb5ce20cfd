"""Formats: native JSON, OCSF (validated against the OCSF 1.5.0 models of
ocsf-emitter), CEF (checked with pycef and a strict spec parser)."""

from __future__ import annotations

import json
import re

import pycef
import pytest
from hypothesis import given
from hypothesis import strategies as st
from ocsf_emitter import models as ocsf_models
from ocsf_emitter import validate as ocsf_validate

from kimonaudit.core.catalogue import CATALOGUE
from kimonaudit.sinks import cef, ocsf
from kimonaudit.sinks.events import CHECKPOINT, StreamEvent
from kimonaudit.sinks.jsonfmt import to_json

OCSF_MODELS = {
    3001: ocsf_models.AccountChange,
    3002: ocsf_models.Authentication,
    3004: ocsf_models.EntityManagement,
    3005: ocsf_models.UserAccess,
    3006: ocsf_models.GroupManagement,
    6001: ocsf_models.WebResourcesActivity,
    6003: ocsf_models.ApiActivity,
    1008: ocsf_models.EventLogActvity,
}


def test_json_carries_seq_leaf_hash_and_type(stream_events: list[StreamEvent]) -> None:
    """Native JSON has the type, tenant, seq and the entry's leaf hash."""
    first = to_json(stream_events[0])
    assert first["type"] == "audit.event" and first["seq"] == 0
    assert first["data"]["leaf_hash"] and first["data"]["seq"] == 0
    assert first["data"]["actor"]["hash"] and "name" not in first["data"]["actor"]
    cp = to_json(stream_events[-1])
    assert cp["type"] == CHECKPOINT and cp["data"]["note"].count("\n") >= 4
    json.dumps(cp)


def test_every_catalogue_action_has_an_ocsf_class() -> None:
    """The mapping table covers the whole catalogue (and audit_stream.updated)."""
    assert set(CATALOGUE) <= set(ocsf.MAPPING)
    for class_uid, activity in ocsf.MAPPING.values():
        assert activity in ocsf.CLASSES[class_uid][2]


def test_ocsf_events_validate_against_the_schema(stream_events: list[StreamEvent]) -> None:
    """Every event (each catalogue action, a custom one, a hostile one, a
    checkpoint) validates as its OCSF 1.5.0 class, invariants included."""
    seen = set()
    for ev in stream_events:
        obj = ocsf.to_ocsf(ev)
        model = OCSF_MODELS[obj["class_uid"]].model_validate(obj)
        ocsf_validate(model)
        seen.add(obj["class_uid"])
        json.dumps(obj)
    assert seen == set(OCSF_MODELS)


def test_ocsf_maps_named_actions(stream_events: list[StreamEvent]) -> None:
    """Spot checks: logon failure, role assignment, API POST, custom export."""
    by_action = {ev.data.get("action"): ocsf.to_ocsf(ev) for ev in stream_events}
    failed = by_action["auth.login.failed"]
    assert (failed["type_uid"], failed["status_id"]) == (300201, 2)
    assert by_action["role.assigned"]["type_uid"] == 300501
    assert by_action["role.assigned"]["user"] == {"uid": "u11", "type": "user"}
    assert by_action["api.request"]["type_uid"] == 600301  # POST -> Create
    assert by_action["billing.invoice.exported"]["type_uid"] == 600107
    assert by_action["sso.config.updated"]["severity_id"] == 5
    assert by_action["ticket.viewed"]["metadata"]["version"] == "1.5.0"


def test_ocsf_rejects_a_wrong_activity() -> None:
    """The validator used above does catch a bad mapping (it can fail)."""
    bad = {"class_uid": 3002, "activity_id": 42}
    with pytest.raises(Exception):  # noqa: B017
        ocsf_models.Authentication.model_validate(bad)


# -- CEF -----------------------------------------------------------------------
def parse_cef(line: str) -> tuple[list[str], dict[str, str]]:
    """A strict CEF:0 parser written from the spec: 7 header fields with
    \\| and \\\\ escapes, then key=value pairs with \\=, \\\\, \\n, \\r escapes."""
    assert line.startswith("CEF:0|")
    fields: list[str] = []
    cur = []
    i = 6
    while len(fields) < 6:
        c = line[i]
        if c == "\\":
            nxt = line[i + 1]
            assert nxt in "\\|", f"bad header escape {nxt!r}"
            cur.append(nxt)
            i += 2
            continue
        if c == "|":
            fields.append("".join(cur))
            cur = []
        else:
            assert c not in "\r\n"
            cur.append(c)
        i += 1
    ext = line[i:]
    assert "\n" not in ext and "\r" not in ext
    out: dict[str, str] = {}
    for m in re.finditer(r"(\w+)=((?:\\.|[^\\=])*?)(?= \w+=|$)", ext):
        raw = m.group(2)
        val = re.sub(r"\\(.)", lambda g: {"n": "\n", "r": "\r"}.get(g.group(1), g.group(1)), raw)
        assert "=" not in re.sub(r"\\.", "", raw), "unescaped = in a value"
        out[m.group(1)] = val
    return fields, out


def test_cef_lines_parse_with_pycef(stream_events: list[StreamEvent]) -> None:
    """Every line parses with pycef: vendor, product, class id, severity, rt."""
    for ev in stream_events[:-2]:  # the hostile event has header escapes pycef cannot read
        if ev.is_checkpoint:
            continue
        parsed = pycef.parse(cef.to_cef(ev))
        assert parsed is not None
        assert parsed["DeviceVendor"] == "KimonDesk"
        assert parsed["DeviceEventClassID"] == ev.data["action"]
        assert parsed["Severity"] == str(cef.SEVERITY[ev.data["severity"]])
        assert parsed["seq"] == str(ev.seq)
        assert parsed["rt"] == str(ev.time_us // 1000)


def test_cef_escapes_header_and_extension(stream_events: list[StreamEvent]) -> None:
    """The hostile entry and the checkpoint (a multi-line note) round-trip."""
    hostile = stream_events[-2]
    header, ext = parse_cef(cef.to_cef(hostile))
    assert ext["cs3"] == "ticket|x\\y"
    assert ext["cs4"] == 'a=b c]"d'
    assert ext["requestClientApplication"] == "bad|agent=1\\\n"
    assert json.loads(ext["cs6"])[0]["to"] == 'é \\ | ] " \n'
    cp = next(e for e in stream_events if e.is_checkpoint)
    header, ext = parse_cef(cef.to_cef(cp))
    assert header[3] == "audit.checkpoint"
    assert ext["cs6"] == cp.data["note"]


@given(st.text(min_size=1, max_size=40), st.text(max_size=60))
def test_cef_escaping_round_trips(name: str, value: str) -> None:
    """Any header text and extension value survives escaping and parsing."""
    value = value.replace("\r\n", "\n")
    line = f"CEF:0|v|p|1|{cef.escape_header(name)}|n|5|cs1={cef.escape_value(value)} cn1=1"
    header, ext = parse_cef(line)
    assert header[3] == name.replace("\r", " ").replace("\n", " ")
    assert ext["cs1"] == value and ext["cn1"] == "1"


def test_docs_carry_the_mapping_table() -> None:
    """docs/streaming.md has the OCSF mapping exactly as the code has it."""
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "streaming.md").read_text()
    assert ocsf.mapping_markdown() in doc


def test_streaming_settings_are_documented() -> None:
    """Each streaming setting's flag and environment variable is in the README."""
    from pathlib import Path

    from kimonaudit.sinks import settings

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for s in settings.ALL:
        assert s.env in readme
    assert "--destination-allowlist" in readme and "deliver --interval" in readme
