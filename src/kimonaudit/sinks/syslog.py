"""RFC 5424 syslog messages and RFC 6587 octet-counting frames.

``<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD-ELEMENT...] MSG``

- PRI = facility * 8 + severity; the facility is 13 ("log audit") unless
  set; severity maps info 6, low 5, medium 4, high 3, critical 2 (a
  checkpoint is 6).
- Header fields are printable US-ASCII, limited to their RFC lengths, "-"
  when empty; MSGID is the action (at most 32 characters).
- Structured data ``[kimonaudit@32473 tenant="..." seq="..." ...]``: param
  values escape ``"``, ``\\`` and ``]`` with a backslash (section 6.3.3).
  32473 is the example enterprise number of RFC 5612; set your own with
  `sd_id`.
- MSG is the formatted event (CEF or JSON) in UTF-8, without a BOM.
- On a stream each message is framed as ``<length> <message>`` (RFC 6587
  section 3.4.1), the length in octets.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

SD_ID = "kimonaudit@32473"
FACILITY_LOG_AUDIT = 13
SEVERITY = {"info": 6, "low": 5, "medium": 4, "high": 3, "critical": 2}
NIL = "-"


def _printable(value: str, limit: int) -> str:
    text = "".join(c for c in value if 33 <= ord(c) <= 126)[:limit]
    return text or NIL


def escape_param(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _sd_name(name: str) -> str:
    # SD-NAME: printable US-ASCII except '=', ' ', ']', '"'; at most 32.
    return "".join(c for c in name if 33 <= ord(c) <= 126 and c not in '= ]"')[:32]


def timestamp(time_us: int) -> str:
    dt = datetime.fromtimestamp(time_us // 1_000_000, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{time_us % 1_000_000:06d}Z"


def message(
    msg: str,
    *,
    time_us: int,
    severity: int,
    facility: int = FACILITY_LOG_AUDIT,
    hostname: str = "",
    app_name: str = "kimonaudit",
    procid: str = "",
    msgid: str = "",
    sd: Sequence[tuple[str, Sequence[tuple[str, str]]]] = (),
) -> bytes:
    """One RFC 5424 message as bytes (no framing, no trailing newline)."""
    if not 0 <= facility <= 23 or not 0 <= severity <= 7:
        raise ValueError("facility must be 0-23 and severity 0-7")
    elements = "".join(
        "["
        + _sd_name(sd_id)
        + "".join(f' {_sd_name(k)}="{escape_param(v)}"' for k, v in params)
        + "]"
        for sd_id, params in sd
    )
    head = " ".join(
        (
            f"<{facility * 8 + severity}>1",
            timestamp(time_us),
            _printable(hostname, 255),
            _printable(app_name, 48),
            _printable(procid, 128),
            _printable(msgid, 32),
            elements or NIL,
        )
    )
    return (head + " " + msg).encode("utf-8") if msg else head.encode("utf-8")


def octet_frame(msg: bytes) -> bytes:
    """RFC 6587 octet counting: ``MSG-LEN SP SYSLOG-MSG``."""
    return b"%d %s" % (len(msg), msg)


def parse_frames(data: bytes) -> tuple[list[bytes], bytes]:
    """Split octet-counted frames; returns (messages, unconsumed tail)."""
    out: list[bytes] = []
    pos = 0
    while True:
        space = data.find(b" ", pos)
        if space < 0:
            break
        length = int(data[pos:space])
        if space + 1 + length > len(data):
            break
        out.append(data[space + 1 : space + 1 + length])
        pos = space + 1 + length
    return out, data[pos:]
