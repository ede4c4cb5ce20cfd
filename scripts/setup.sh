#!/usr/bin/env bash
# Install what KimonAudit needs into ./.venv (idempotent). With --test, also
# what the test suite needs: dev dependencies, Debian's chromium for the
# browser tests and Debian's rsyslog (with TLS) as the syslog receiver.
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
# The optional C extension (src/kimonaudit/_native.c: verify's row scans,
# Merkle node hashing) needs a C compiler and the SQLite, OpenSSL and libpq
# headers; without them the install still succeeds and the pure-Python code
# runs (without libpq's, PostgreSQL's scan reads its rows through psycopg).
if { [ ! -f /usr/include/sqlite3.h ] || [ ! -f /usr/include/openssl/evp.h ] \
  || [ ! -f /usr/include/postgresql/libpq-fe.h ] || ! command -v gcc >/dev/null; }; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing gcc and the SQLite, OpenSSL and libpq headers for the C extension" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc libsqlite3-dev libssl-dev libpq-dev >/dev/null
  else
    echo "setup: no C compiler or headers; verify will use its slower pure-Python scan" >&2
  fi
fi

# The stamp covers the C source too: an editable install builds the extension
# once, so a changed _native.c needs the install to run again.
stamp=".venv/.installed-$( (cat pyproject.toml setup.py src/kimonaudit/_native.c; echo $want_test) | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  if [ $want_test = 1 ]; then
    .venv/bin/python -m pip install --quiet -e '.[dev]'
  else
    .venv/bin/python -m pip install --quiet -e '.[server]'
  fi
  rm -f .venv/.installed-*
  touch "$stamp"
fi

if [ $want_test = 1 ] && [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing Debian's chromium for the browser tests" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "setup: /usr/bin/chromium missing; install it with: sudo apt-get install chromium" >&2
  fi
fi

if [ $want_test = 1 ] && { [ ! -x /usr/sbin/rsyslogd ] || ! ls /usr/lib/*/rsyslog/lmnsd_gtls.so >/dev/null 2>&1; }; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing Debian's rsyslog for the syslog delivery tests" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rsyslog rsyslog-gnutls >/dev/null
  else
    echo "setup: rsyslogd missing; install it with: sudo apt-get install rsyslog rsyslog-gnutls" >&2
  fi
fi
