#!/usr/bin/env bash
# Makes `promtool` and `prometheus` available for the tests that check our /metrics output with the
# real parser (test/support/promtool.ts runs this once per test process).
#
#   on PATH already                  -> prints their paths, exit 0
#   root with apt-get                -> installs Debian's `prometheus` package, exit 0
#   otherwise                        -> one loud line on stderr, exit 1 (the tests skip, loudly)
#
# The Debian package ships a systemd/init service that would start a Prometheus server on :9090.
# Tests start their own servers, so the install runs under a policy-rc.d that forbids starting
# services, and the service is stopped and disabled afterwards in case an init system started it.
#
# Last lines of stdout on success: `promtool=<path>` and `prometheus=<path>`.
set -euo pipefail

report() {
  echo "promtool=$(command -v promtool)"
  echo "prometheus=$(command -v prometheus)"
}

if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
  report
  exit 0
fi

fail() {
  echo "!!! ensure-prometheus: $* — tests that need promtool will be SKIPPED. Install Debian's 'prometheus' package (or put promtool and prometheus on PATH)." >&2
  exit 1
}

[ "$(id -u)" = 0 ] || fail "promtool/prometheus are not on PATH and this user is not root, so apt-get cannot install them"
command -v apt-get >/dev/null 2>&1 || fail "promtool/prometheus are not on PATH and there is no apt-get on this machine"

# Test files run in parallel: one install at a time (dpkg has its own lock, but apt-get update does not wait for it).
if command -v flock >/dev/null 2>&1; then
  exec 9>/tmp/txoutbox-ensure-prometheus.lock
  flock 9
  # Another process may have installed it while this one waited.
  if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
    report
    exit 0
  fi
fi

export DEBIAN_FRONTEND=noninteractive
APT_OPTS=(-o DPkg::Lock::Timeout=300 -q)

# No service may start during the install: policy-rc.d exit 101 = "action forbidden" (invoke-rc.d(8)).
policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  own_policy=1
fi
cleanup() {
  if [ "$own_policy" = 1 ]; then rm -f "$policy"; fi
}
trap cleanup EXIT

candidate() { apt-cache policy prometheus 2>/dev/null | awk '/Candidate:/ { print $2 }'; }
if [ -z "$(candidate)" ] || [ "$(candidate)" = "(none)" ]; then
  apt-get "${APT_OPTS[@]}" update >&2 || fail "apt-get update failed"
fi
apt-get "${APT_OPTS[@]}" install -y --no-install-recommends prometheus >&2 || fail "apt-get install prometheus failed"

# Belt and braces: whatever an init system did, leave no Prometheus service running or enabled.
if command -v systemctl >/dev/null 2>&1; then
  if [ -d /run/systemd/system ]; then systemctl stop prometheus >/dev/null 2>&1 || true; fi
  # Works without a running systemd too (it only removes the multi-user.target.wants link).
  systemctl disable prometheus >/dev/null 2>&1 || true
fi
if command -v service >/dev/null 2>&1 && [ -x /etc/init.d/prometheus ] && [ ! -d /run/systemd/system ]; then
  service prometheus stop >/dev/null 2>&1 || true
fi
if command -v update-rc.d >/dev/null 2>&1 && [ -x /etc/init.d/prometheus ]; then
  update-rc.d prometheus disable >/dev/null 2>&1 || true
fi

command -v promtool >/dev/null 2>&1 || fail "the prometheus package installed but promtool is not on PATH"
command -v prometheus >/dev/null 2>&1 || fail "the prometheus package installed but prometheus is not on PATH"
report
