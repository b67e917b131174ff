#!/usr/bin/env bash
# Start the local PostgreSQL cluster if it is installed but not running. The tests create and
# drop their own scratch databases on it (ENGRAM_TEST_POSTGRES_URL, default the local server).
set -euo pipefail
url=${ENGRAM_TEST_POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/test}
if command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p 5432; then
  exit 0
fi
if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
  echo "postgres: starting the local cluster" >&2
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && exit 0; sleep 1; done
fi
echo "postgres: no server answers at $url; the PostgreSQL tests will fail" >&2
