#!/usr/bin/env bash
# Run every test: lint, then the whole pytest suite on SQLite and PostgreSQL.
# PostgreSQL is started if it is not running; under CI (CI=true) the
# PostgreSQL suite must run, so an unreachable server fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test

export KIMONAUDIT_TEST_POSTGRES_URL="${KIMONAUDIT_TEST_POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/test}"
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    echo "test: starting PostgreSQL" >&2
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
  fi
fi
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  echo "test: PostgreSQL at 127.0.0.1:5432 is not reachable" >&2
  [ -n "${CI:-}" ] && exit 1
fi

.venv/bin/ruff check src tests benchmarks
.venv/bin/ruff format --check src tests benchmarks
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
