#!/usr/bin/env bash
# The README's first command: set everything up, then run the end-to-end demo.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/engram demo "$@"
