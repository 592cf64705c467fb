#!/usr/bin/env bash
# Tessera gateway vs twemproxy (and redis-server direct), same run; see bench/gateway.py.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m bench.gateway "$@"
