#!/usr/bin/env bash
# Makes `redis-server` (Debian bookworm ships 7.0.x: streams since 5.0) available for the Redis
# Streams sink's tests (test/support/redis-server.ts runs this once per test process, then starts its
# own server on a free port in a temp dir). How: scripts/lib/ensure-debian-package.sh.
#
# Last lines of stdout on success: `redis-server-version=<version>` and `redis-server=<path>`.
set -euo pipefail

PACKAGE=redis-server NAME=redis WHAT='Redis Streams sink tests' SERVICES='redis-server'
installed() { command -v redis-server >/dev/null 2>&1; }
report() {
  echo "redis-server-version=$("$(command -v redis-server)" --version 2>/dev/null || echo unknown)"
  echo "redis-server=$(command -v redis-server)"
}

# shellcheck source=lib/ensure-debian-package.sh
. "$(dirname "$0")/lib/ensure-debian-package.sh"
ensure_package
