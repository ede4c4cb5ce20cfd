#!/usr/bin/env bash
# Set up and run KimonAudit on embedded SQLite: installs into ./.venv, fills
# ./kimonaudit.db with a demo helpdesk history on first run, then serves the
# API and console on http://127.0.0.1:8080 (Ctrl-C stops it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export KIMONAUDIT_DATABASE_URL="${KIMONAUDIT_DATABASE_URL:-sqlite:///kimonaudit.db}"
if [ ! -f kimonaudit.db ]; then
  .venv/bin/kimonaudit demo
fi
exec .venv/bin/kimonaudit serve "$@"
