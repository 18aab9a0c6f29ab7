# shellcheck shell=bash
# The body every scripts/ensure-<server>.sh shares: install one Debian package for the tests that
# need its server, as root or through `sudo -n`, without letting the package start (or leave enabled)
# a service of its own — the tests start their own servers on free ports.
#
# The script that sources this sets, then calls `ensure_package`:
#   PACKAGE   the Debian package               NAME   short name for the lock file and messages
#   WHAT      "RabbitMQ sink tests", …         SERVICES  services the package may start (space-separated)
# and defines:
#   installed   succeeds when the server is usable already (on PATH, or its files in place)
#   report      prints the `key=value` lines the test support reads from the last lines of stdout
#   after_install (optional) anything else the package leaves behind
#
#   installed already                -> report, exit 0
#   root with apt-get, or `sudo -n`  -> installs the package, report, exit 0
#   otherwise                        -> one loud line on stderr, exit 1 (the tests skip, loudly; in CI they fail)

fail() {
  echo "!!! ensure-$NAME: $* — $WHAT will be SKIPPED (and FAIL when CI is set). Install Debian's '$PACKAGE' package." >&2
  exit 1
}

ensure_package() {
  if installed; then
    report
    exit 0
  fi
  command -v apt-get >/dev/null 2>&1 || fail "$PACKAGE is not installed and there is no apt-get on this machine"
  if [ "$(id -u)" = 0 ]; then
    as_root=()
  elif command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
    as_root=(sudo -n)
  else
    fail "$PACKAGE is not installed and this user is neither root nor allowed 'sudo -n', so apt-get cannot install it"
  fi

  # Test files run in parallel: one install at a time (dpkg has its own lock, but apt-get update does not wait for it).
  if command -v flock >/dev/null 2>&1; then
    exec 9>"/tmp/txoutbox-ensure-$NAME.lock"
    flock 9
    # Another process may have installed it while this one waited.
    if installed; then
      report
      exit 0
    fi
  fi

  local apt=("${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 -q)

  # No service may start during the install: policy-rc.d exit 101 = "action forbidden" (invoke-rc.d(8)).
  policy=/usr/sbin/policy-rc.d
  own_policy=0
  if [ ! -e "$policy" ]; then
    "${as_root[@]}" sh -c "printf '#!/bin/sh\nexit 101\n' >$policy && chmod 755 $policy"
    own_policy=1
  fi
  trap 'if [ "$own_policy" = 1 ]; then "${as_root[@]}" rm -f "$policy"; fi' EXIT

  local candidate
  candidate=$(apt-cache policy "$PACKAGE" 2>/dev/null | awk '/Candidate:/ { print $2 }')
  if [ -z "$candidate" ] || [ "$candidate" = "(none)" ]; then
    "${apt[@]}" update >&2 || fail "apt-get update failed"
  fi
  # --no-install-recommends: the servers need none of them (RabbitMQ's are a whole Erlang toolchain).
  "${apt[@]}" install -y --no-install-recommends "$PACKAGE" >&2 || fail "apt-get install $PACKAGE failed"

  # Belt and braces: whatever an init system did, leave none of the package's services running or enabled.
  local service
  for service in $SERVICES; do
    if command -v systemctl >/dev/null 2>&1; then
      if [ -d /run/systemd/system ]; then "${as_root[@]}" systemctl stop "$service" >/dev/null 2>&1 || true; fi
      "${as_root[@]}" systemctl disable "$service" >/dev/null 2>&1 || true
    fi
    if [ -x "/etc/init.d/$service" ]; then
      if [ ! -d /run/systemd/system ] && command -v service >/dev/null 2>&1; then "${as_root[@]}" service "$service" stop >/dev/null 2>&1 || true; fi
      if command -v update-rc.d >/dev/null 2>&1; then "${as_root[@]}" update-rc.d "$service" disable >/dev/null 2>&1 || true; fi
    fi
  done
  if declare -F after_install >/dev/null; then after_install; fi

  installed || fail "the $PACKAGE package installed, but what the tests need from it is missing"
  report
}
