#!/usr/bin/env bash
# Set up and run KimonAudit on embedded SQLite: installs into ./.venv, fills
# ./kimonaudit.db with a demo helpdesk history on first run, then serves the
# API and console on http://127.0.0.1:8080, or where --host/--port say
# (Ctrl-C stops it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export KIMONAUDIT_DATABASE_URL="${KIMONAUDIT_DATABASE_URL:-sqlite:///kimonaudit.db}"
if [ ! -f kimonaudit.db ]; then
  # The demo prints the console's address: the one `serve` will listen on.
  host=127.0.0.1 port=8080 prev=
  for arg in "$@"; do
    case "$prev" in --host) host=$arg ;; --port) port=$arg ;; esac
    case "$arg" in --host=*) host=${arg#--host=} ;; --port=*) port=${arg#--port=} ;; esac
    prev=$arg
  done
  [ "$host" = 0.0.0.0 ] && host=127.0.0.1
  .venv/bin/kimonaudit demo --console-url "http://$host:$port/console/"
fi
exec .venv/bin/kimonaudit serve "$@"
