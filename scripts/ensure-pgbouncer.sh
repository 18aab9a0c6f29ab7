#!/usr/bin/env bash
# Makes `pgbouncer` available for the tests that run txoutbox behind PgBouncer in transaction mode
# (test/support/pgbouncer.ts runs this once per test process, then starts its own pgbouncer on a
# free port with an ini file in a temp dir). Debian's package ships a service that would start a
# pgbouncer on :6432: it is neither started nor left enabled. How: scripts/lib/ensure-debian-package.sh.
#
# Last lines of stdout on success: `pgbouncer-version=<version line>` and `pgbouncer=<path>`.
set -euo pipefail

PACKAGE=pgbouncer NAME=pgbouncer WHAT='PgBouncer tests' SERVICES='pgbouncer'
installed() { command -v pgbouncer >/dev/null 2>&1; }
report() {
  echo "pgbouncer-version=$("$(command -v pgbouncer)" --version 2>/dev/null | head -n 1 || echo unknown)"
  echo "pgbouncer=$(command -v pgbouncer)"
}

# shellcheck source=lib/ensure-debian-package.sh
. "$(dirname "$0")/lib/ensure-debian-package.sh"
ensure_package
