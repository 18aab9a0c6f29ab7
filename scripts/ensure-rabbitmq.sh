#!/usr/bin/env bash
# Makes RabbitMQ (Debian's `rabbitmq-server`, which brings Erlang) available for the RabbitMQ sink's
# tests. test/support/rabbitmq-server.ts runs this once per test process, then starts a private
# broker of its own (own node name, data dir, ports, epmd and cookie) as the current user.
#
#   installed already                -> prints its paths, exit 0
#   root with apt-get                -> installs Debian's `rabbitmq-server` package, exit 0
#   not root, `sudo -n` works        -> the same install through sudo, exit 0
#   otherwise                        -> one loud line on stderr, exit 1 (the tests skip, loudly; in CI they fail)
#
# The package ships a service that would start a broker on :5672 (and an epmd on :4369). Tests start
# their own brokers, so the install runs under a policy-rc.d that forbids starting services, and the
# service is stopped and disabled afterwards in case an init system started it anyway.
#
# The tests run the broker's own start script, /usr/lib/rabbitmq/bin/rabbitmq-server, not the
# /usr/sbin wrapper: the wrapper switches to the `rabbitmq` user and its fixed data directory.
#
# Last lines of stdout on success: `rabbitmq-version=<version>`, `rabbitmq-server=<path>`,
# `epmd=<path>`.
set -euo pipefail

SERVER=/usr/lib/rabbitmq/bin/rabbitmq-server

epmd_path() {
  command -v epmd 2>/dev/null || ls /usr/lib/erlang/erts-*/bin/epmd 2>/dev/null | head -n 1 || true
}

installed() {
  [ -x "$SERVER" ] && [ -n "$(epmd_path)" ]
}

report() {
  echo "rabbitmq-version=$(dpkg-query -W -f='${Version}' rabbitmq-server 2>/dev/null || echo unknown)"
  echo "rabbitmq-server=$SERVER"
  echo "epmd=$(epmd_path)"
}

if installed; then
  report
  exit 0
fi

fail() {
  echo "!!! ensure-rabbitmq: $* — RabbitMQ sink tests will be SKIPPED (and FAIL when CI is set). Install Debian's 'rabbitmq-server' package." >&2
  exit 1
}

command -v apt-get >/dev/null 2>&1 || fail "rabbitmq-server is not installed and there is no apt-get on this machine"
if [ "$(id -u)" = 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
  as_root=(sudo -n)
else
  fail "rabbitmq-server is not installed and this user is neither root nor allowed 'sudo -n', so apt-get cannot install it"
fi

# Test files run in parallel: one install at a time (dpkg has its own lock, but apt-get update does not wait for it).
if command -v flock >/dev/null 2>&1; then
  exec 9>/tmp/txoutbox-ensure-rabbitmq.lock
  flock 9
  # Another process may have installed it while this one waited.
  if installed; then
    report
    exit 0
  fi
fi

APT=("${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 -q)

# No service may start during the install: policy-rc.d exit 101 = "action forbidden" (invoke-rc.d(8)).
policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
  "${as_root[@]}" sh -c "printf '#!/bin/sh\nexit 101\n' >$policy && chmod 755 $policy"
  own_policy=1
fi
cleanup() {
  if [ "$own_policy" = 1 ]; then "${as_root[@]}" rm -f "$policy"; fi
}
trap cleanup EXIT

candidate() { apt-cache policy rabbitmq-server 2>/dev/null | awk '/Candidate:/ { print $2 }'; }
if [ -z "$(candidate)" ] || [ "$(candidate)" = "(none)" ]; then
  "${APT[@]}" update >&2 || fail "apt-get update failed"
fi
# --no-install-recommends: the recommends are a full Erlang/OTP toolchain the broker does not need.
"${APT[@]}" install -y --no-install-recommends rabbitmq-server >&2 || fail "apt-get install rabbitmq-server failed"

# Belt and braces: whatever an init system did, leave no RabbitMQ service (nor its epmd) running or enabled.
if command -v systemctl >/dev/null 2>&1; then
  if [ -d /run/systemd/system ]; then
    "${as_root[@]}" systemctl stop rabbitmq-server epmd.socket epmd.service >/dev/null 2>&1 || true
  fi
  "${as_root[@]}" systemctl disable rabbitmq-server >/dev/null 2>&1 || true
fi
if command -v service >/dev/null 2>&1 && [ -x /etc/init.d/rabbitmq-server ] && [ ! -d /run/systemd/system ]; then
  "${as_root[@]}" service rabbitmq-server stop >/dev/null 2>&1 || true
fi
if command -v update-rc.d >/dev/null 2>&1 && [ -x /etc/init.d/rabbitmq-server ]; then
  "${as_root[@]}" update-rc.d rabbitmq-server disable >/dev/null 2>&1 || true
fi

# Something in the install (seen with bookworm's 3.10.8) leaves an `epmd -daemon` of the new `rabbitmq`
# user listening on :4369. The tests run epmds of their own on free ports; stop the install's, by pid.
for pid in $(pgrep -u rabbitmq -x epmd 2>/dev/null || true); do
  "${as_root[@]}" kill "$pid" >/dev/null 2>&1 || true
done

installed || fail "the rabbitmq-server package installed but $SERVER or epmd is missing"
report
