#!/usr/bin/env bash
# The README's second command: set everything up, then run the whole test suite
# (SQLite and PostgreSQL, and the tests that need the real base model).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/start-postgres.sh
exec .venv/bin/python -m pytest "$@"
