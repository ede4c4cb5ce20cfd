"""SIEM streaming: destinations, formats and transports.

A delivery is a pipeline of small stages, each a plain typed callable::

    select (ledger, seq order; a destination's filter)
        -> event (kimonaudit.sinks.events.StreamEvent: one canonical shape)
        -> format (json | ocsf | cef: StreamEvent -> dict or str)
        -> frame (syslog RFC 5424 + RFC 6587, HEC stacking, NDJSON, gzip)
        -> sign (Standard Webhooks) -> transport (HTTP, TCP/TLS, S3)

The format and framing stages (this package's modules other than
`transports`) do no I/O; the SSRF guard only resolves names. docs/streaming.md
documents every stage, the field mappings and the retry schedule.
"""
