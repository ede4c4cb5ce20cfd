"""Helpdesk-side integrations: typed event helpers and field diffs
(`helpdesk`), and ASGI middleware that records every API call (`asgi`).

The client that delivers events lives in `kimonaudit.client`."""
