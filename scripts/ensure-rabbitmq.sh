#!/usr/bin/env bash
# Makes RabbitMQ (Debian's `rabbitmq-server`, which brings Erlang) available for the RabbitMQ sink's
# tests. test/support/rabbitmq-server.ts runs this once per test process, then starts a private
# broker of its own (own node name, data dir, ports, epmd and cookie) as the current user.
# How: scripts/lib/ensure-debian-package.sh.
#
# The tests run the broker's own start script, /usr/lib/rabbitmq/bin/rabbitmq-server, not the
# /usr/sbin wrapper: the wrapper switches to the `rabbitmq` user and its fixed data directory.
#
# Last lines of stdout on success: `rabbitmq-version=<version>`, `rabbitmq-server=<path>`,
# `epmd=<path>`.
set -euo pipefail

SERVER=/usr/lib/rabbitmq/bin/rabbitmq-server
PACKAGE=rabbitmq-server NAME=rabbitmq WHAT='RabbitMQ sink tests' SERVICES='rabbitmq-server epmd.socket epmd.service'

epmd_path() {
  command -v epmd 2>/dev/null || ls /usr/lib/erlang/erts-*/bin/epmd 2>/dev/null | head -n 1 || true
}
installed() { [ -x "$SERVER" ] && [ -n "$(epmd_path)" ]; }
report() {
  echo "rabbitmq-version=$(dpkg-query -W -f='${Version}' rabbitmq-server 2>/dev/null || echo unknown)"
  echo "rabbitmq-server=$SERVER"
  echo "epmd=$(epmd_path)"
}
# Something in the install (seen with bookworm's 3.10.8) leaves an `epmd -daemon` of the new
# `rabbitmq` user listening on :4369. The tests run epmds of their own on free ports; stop the
# install's, by pid.
after_install() {
  for pid in $(pgrep -u rabbitmq -x epmd 2>/dev/null || true); do
    "${as_root[@]}" kill "$pid" >/dev/null 2>&1 || true
  done
}

# shellcheck source=lib/ensure-debian-package.sh
. "$(dirname "$0")/lib/ensure-debian-package.sh"
ensure_package
