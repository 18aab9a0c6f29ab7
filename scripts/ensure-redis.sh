#!/usr/bin/env bash
# Makes `redis-server` (Debian bookworm ships 7.0.x: streams since 5.0) available for the Redis Streams
# sink's tests (test/support/redis-server.ts runs this once per test process, then starts its own server on
# a free port in a temp dir).
#
#   on PATH already                  -> prints its path, exit 0
#   root with apt-get                -> installs Debian's `redis-server` package, exit 0
#   not root, `sudo -n` works        -> the same install through sudo, exit 0
#   otherwise                        -> one loud line on stderr, exit 1 (the tests skip, loudly; in CI they fail)
#
# The package ships a service that would start a server on :6379. Tests start their own servers,
# so the install runs under a policy-rc.d that forbids starting services, and the service is stopped
# and disabled afterwards in case an init system started it anyway.
#
# Last lines of stdout on success: `redis-server-version=<version>` and `redis-server=<path>`.
set -euo pipefail

report() {
  echo "redis-server-version=$("$(command -v redis-server)" --version 2>/dev/null || echo unknown)"
  echo "redis-server=$(command -v redis-server)"
}

if command -v redis-server >/dev/null 2>&1; then
  report
  exit 0
fi

fail() {
  echo "!!! ensure-redis: $* — Redis Streams sink tests will be SKIPPED (and FAIL when CI is set). Install Debian's 'redis-server' package (or put redis-server on PATH)." >&2
  exit 1
}

command -v apt-get >/dev/null 2>&1 || fail "redis-server is not on PATH and there is no apt-get on this machine"
if [ "$(id -u)" = 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
  as_root=(sudo -n)
else
  fail "redis-server is not on PATH and this user is neither root nor allowed 'sudo -n', so apt-get cannot install it"
fi

# Test files run in parallel: one install at a time (dpkg has its own lock, but apt-get update does not wait for it).
if command -v flock >/dev/null 2>&1; then
  exec 9>/tmp/txoutbox-ensure-redis.lock
  flock 9
  # Another process may have installed it while this one waited.
  if command -v redis-server >/dev/null 2>&1; then
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

candidate() { apt-cache policy redis-server 2>/dev/null | awk '/Candidate:/ { print $2 }'; }
if [ -z "$(candidate)" ] || [ "$(candidate)" = "(none)" ]; then
  "${APT[@]}" update >&2 || fail "apt-get update failed"
fi
"${APT[@]}" install -y --no-install-recommends redis-server >&2 || fail "apt-get install redis-server failed"

# Belt and braces: whatever an init system did, leave no Redis service running or enabled.
for service in redis-server; do
  if command -v systemctl >/dev/null 2>&1; then
    if [ -d /run/systemd/system ]; then "${as_root[@]}" systemctl stop "$service" >/dev/null 2>&1 || true; fi
    "${as_root[@]}" systemctl disable "$service" >/dev/null 2>&1 || true
  fi
  if [ -x "/etc/init.d/$service" ]; then
    if [ ! -d /run/systemd/system ] && command -v service >/dev/null 2>&1; then "${as_root[@]}" service "$service" stop >/dev/null 2>&1 || true; fi
    if command -v update-rc.d >/dev/null 2>&1; then "${as_root[@]}" update-rc.d "$service" disable >/dev/null 2>&1 || true; fi
  fi
done

command -v redis-server >/dev/null 2>&1 || fail "the redis-server package installed but redis-server is not on PATH"
report
