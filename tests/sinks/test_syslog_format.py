"""RFC 5424 messages and RFC 6587 octet counting, checked against the ABNF."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from kimonaudit.sinks import syslog

# RFC 5424 section 6 as a regex: HEADER SP STRUCTURED-DATA [SP MSG]
HEADER = re.compile(
    rb"<(\d{1,3})>1 (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{1,6}Z) ([!-~]{1,255}) ([!-~]{1,48}) "
    rb"([!-~]{1,128}) ([!-~]{1,32}) "
)


def parse_sd(data: str) -> tuple[list[tuple[str, dict[str, str]]], str]:
    """Structured data per section 6.3, unescaping \\" \\\\ \\]; returns the rest."""
    if data.startswith("-"):
        return [], data[2:] if len(data) > 1 else ""
    out = []
    i = 0
    while i < len(data) and data[i] == "[":
        m = re.compile(r'\[([^ =\]"]+)').match(data, i)
        assert m
        sd_id, i = m.group(1), m.end()
        params: dict[str, str] = {}
        while data[i] == " ":
            m = re.compile(r' ([^ =\]"]+)="').match(data, i)
            assert m
            i = m.end()
            val = []
            while data[i] != '"':
                if data[i] == "\\" and data[i + 1] in '"\\]':
                    val.append(data[i + 1])
                    i += 2
                else:
                    assert data[i] != "]", "unescaped ] in a param value"
                    val.append(data[i])
                    i += 1
            params[m.group(1)] = "".join(val)
            i += 1
        assert data[i] == "]"
        i += 1
        out.append((sd_id, params))
    return out, data[i + 1 :]


def test_message_matches_the_abnf() -> None:
    """PRI, version, timestamp, header fields, SD and MSG where RFC 5424 puts them."""
    msg = syslog.message(
        "CEF:0|a|b|1|x|y|5|k=v",
        time_us=1_764_000_000_123_456,
        severity=syslog.SEVERITY["high"],
        hostname="audit.example",
        msgid="ticket.field_changed",
        sd=[(syslog.SD_ID, [("tenant", "t1"), ("seq", "42")])],
    )
    m = HEADER.match(msg)
    assert m, msg
    assert int(m.group(1)) == 13 * 8 + 3
    assert m.group(2) == b"2025-11-24T16:00:00.123456Z"
    assert m.group(6) == b"ticket.field_changed"
    sd, rest = parse_sd(msg[m.end() :].decode())
    assert sd == [("kimonaudit@32473", {"tenant": "t1", "seq": "42"})]
    assert rest == "CEF:0|a|b|1|x|y|5|k=v"


@given(st.text(max_size=50), st.text(max_size=80))
def test_sd_escaping_round_trips(value: str, body: str) -> None:
    """Any param value comes back unchanged; the header never breaks."""
    msg = syslog.message(
        body, time_us=0, severity=6, hostname="h é x", msgid="a" * 50, sd=[("x@1", [("v", value)])]
    )
    m = HEADER.match(msg)
    assert m and len(m.group(6)) == 32 and m.group(3) == b"hx"
    sd, rest = parse_sd(msg[m.end() :].decode())
    assert sd[0][1]["v"] == value
    assert rest == body


def test_octet_counting_frames_in_bytes() -> None:
    """Length counts octets (UTF-8), frames concatenate and split back."""
    a = syslog.message("é", time_us=0, severity=6)
    b = syslog.message("plain", time_us=0, severity=6)
    framed = syslog.octet_frame(a) + syslog.octet_frame(b)
    assert framed.startswith(f"{len(a)} ".encode()) and len(a) > len(a.decode())
    msgs, tail = syslog.parse_frames(framed + b"12 partial")
    assert msgs == [a, b] and tail == b"12 partial"
