"""The admin console: server-rendered pages under /console/.

`kimonaudit.console.web.create_console(log)` builds it as an ASGI app that
`kimonaudit.api.routes_console` mounts into the HTTP server. This package
file imports nothing, so the stores and the CLI can use
`kimonaudit.console.records` and `kimonaudit.console.accounts` without
loading the web framework or the templates. docs/console.md describes it.
"""
