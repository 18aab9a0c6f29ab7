#!/usr/bin/env bash
# Makes `nats-server` (with JetStream: Debian bookworm ships 2.9.x) available for the NATS sink's
# tests (test/support/nats-server.ts runs this once per test process, then starts its own server on
# a free port in a temp dir).
#
#   on PATH already                  -> prints its path, exit 0
#   root with apt-get                -> installs Debian's `nats-server` package, exit 0
#   not root, `sudo -n` works        -> the same install through sudo, exit 0
#   otherwise                        -> one loud line on stderr, exit 1 (the tests skip, loudly; in CI they fail)
#
# The package may ship a service that would start a server on :4222. Tests start their own servers,
# so the install runs under a policy-rc.d that forbids starting services, and the service is stopped
# and disabled afterwards in case an init system started it anyway.
#
# Last lines of stdout on success: `nats-server-version=<version>` and `nats-server=<path>`.
set -euo pipefail

report() {
  echo "nats-server-version=$("$(command -v nats-server)" --version 2>/dev/null || echo unknown)"
  echo "nats-server=$(command -v nats-server)"
}

if command -v nats-server >/dev/null 2>&1; then
  report
  exit 0
fi

fail() {
  echo "!!! ensure-nats: $* — NATS sink tests will be SKIPPED (and FAIL when CI is set). Install Debian's 'nats-server' package (or put nats-server on PATH)." >&2
  exit 1
}

command -v apt-get >/dev/null 2>&1 || fail "nats-server is not on PATH and there is no apt-get on this machine"
if [ "$(id -u)" = 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
  as_root=(sudo -n)
else
  fail "nats-server is not on PATH and this user is neither root nor allowed 'sudo -n', so apt-get cannot install it"
fi

# Test files run in parallel: one install at a time (dpkg has its own lock, but apt-get update does not wait for it).
if command -v flock >/dev/null 2>&1; then
  exec 9>/tmp/txoutbox-ensure-nats.lock
  flock 9
  # Another process may have installed it while this one waited.
  if command -v nats-server >/dev/null 2>&1; then
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

candidate() { apt-cache policy nats-server 2>/dev/null | awk '/Candidate:/ { print $2 }'; }
if [ -z "$(candidate)" ] || [ "$(candidate)" = "(none)" ]; then
  "${APT[@]}" update >&2 || fail "apt-get update failed"
fi
"${APT[@]}" install -y --no-install-recommends nats-server >&2 || fail "apt-get install nats-server failed"

# Belt and braces: whatever an init system did, leave no NATS service running or enabled.
for service in nats-server nats; do
  if command -v systemctl >/dev/null 2>&1; then
    if [ -d /run/systemd/system ]; then "${as_root[@]}" systemctl stop "$service" >/dev/null 2>&1 || true; fi
    "${as_root[@]}" systemctl disable "$service" >/dev/null 2>&1 || true
  fi
  if [ -x "/etc/init.d/$service" ]; then
    if [ ! -d /run/systemd/system ] && command -v service >/dev/null 2>&1; then "${as_root[@]}" service "$service" stop >/dev/null 2>&1 || true; fi
    if command -v update-rc.d >/dev/null 2>&1; then "${as_root[@]}" update-rc.d "$service" disable >/dev/null 2>&1 || true; fi
  fi
done

command -v nats-server >/dev/null 2>&1 || fail "the nats-server package installed but nats-server is not on PATH"
report
