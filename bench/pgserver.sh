#!/usr/bin/env bash
# pgserver vs redis-server, same run; see bench/pgserver.py for options.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m bench.pgserver "$@"
