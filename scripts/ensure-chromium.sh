#!/usr/bin/env bash
# Makes a `chromium` available for the browser tests (test/support/browser.ts runs this once per
# test process; playwright-core drives it through its executable path, it never downloads one).
#
#   on PATH already                  -> prints its path, exit 0
#   root with apt-get                -> installs Debian's `chromium` package, exit 0
#   not root, `sudo -n` works        -> the same install through sudo, exit 0
#   otherwise                        -> one loud line on stderr, exit 1 (the tests skip, loudly; in CI they fail)
#
# --no-install-recommends: the recommends (chromium-sandbox, upower, udev, mesa, notification-daemon,
# printing) are for a desktop; headless rendering needs none of them. It does need one font, or every
# glyph is an empty box in a screenshot: fonts-dejavu-core is named explicitly because chromium only
# *recommends* fonts-liberation.
# No service may start during the install (dbus and friends can come in as dependencies on a bare
# image): the install runs under a policy-rc.d that forbids starting services.
#
# Last line of stdout on success: `chromium=<path>`.
set -euo pipefail

report() {
  echo "chromium-version=$("$(command -v chromium)" --version 2>/dev/null || echo unknown)"
  echo "chromium=$(command -v chromium)"
}

if command -v chromium >/dev/null 2>&1; then
  report
  exit 0
fi

fail() {
  echo "!!! ensure-chromium: $* — browser tests will be SKIPPED (and FAIL when CI is set). Install Debian's 'chromium' and 'fonts-dejavu-core' packages (or put a Chromium named 'chromium' on PATH)." >&2
  exit 1
}

command -v apt-get >/dev/null 2>&1 || fail "chromium is not on PATH and there is no apt-get on this machine"
if [ "$(id -u)" = 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
  as_root=(sudo -n)
else
  fail "chromium is not on PATH and this user is neither root nor allowed 'sudo -n', so apt-get cannot install it"
fi

# Test files run in parallel: one install at a time (dpkg has its own lock, but apt-get update does not wait for it).
if command -v flock >/dev/null 2>&1; then
  exec 9>/tmp/txoutbox-ensure-chromium.lock
  flock 9
  # Another process may have installed it while this one waited.
  if command -v chromium >/dev/null 2>&1; then
    report
    exit 0
  fi
fi

APT=("${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 -q)
PACKAGES=(chromium fonts-dejavu-core)

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

# Always refresh the package list first (about 2 s): Debian stable ships Chromium's new majors through
# bookworm-security, every few weeks, and a machine image's list often lacks that suite or is older
# (seen here: the image's list offered 150, the refreshed one 156). playwright-core speaks the
# DevTools protocol of one Chromium major (architecture/browser-tests.md): the current Debian build is
# the one it was chosen for, and the old .deb an outdated list names may be gone from the mirror.
"${APT[@]}" update >&2 || fail "apt-get update failed"
"${APT[@]}" install -y --no-install-recommends "${PACKAGES[@]}" >&2 || fail "apt-get install ${PACKAGES[*]} failed"

command -v chromium >/dev/null 2>&1 || fail "the chromium package installed but chromium is not on PATH"
report
