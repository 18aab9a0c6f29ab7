#!/usr/bin/env bash
# Makes `nats-server` (with JetStream: Debian bookworm ships 2.9.x) available for the NATS sink's
# tests (test/support/nats-server.ts runs this once per test process, then starts its own server on
# a free port in a temp dir). How: scripts/lib/ensure-debian-package.sh.
#
# Last lines of stdout on success: `nats-server-version=<version>` and `nats-server=<path>`.
set -euo pipefail

PACKAGE=nats-server NAME=nats WHAT='NATS sink tests' SERVICES='nats-server nats'
installed() { command -v nats-server >/dev/null 2>&1; }
report() {
  echo "nats-server-version=$("$(command -v nats-server)" --version 2>/dev/null || echo unknown)"
  echo "nats-server=$(command -v nats-server)"
}

# shellcheck source=lib/ensure-debian-package.sh
. "$(dirname "$0")/lib/ensure-debian-package.sh"
ensure_package
