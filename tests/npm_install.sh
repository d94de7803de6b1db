#!/usr/bin/env bash
# Install a test's npm packages, pinned by its package.json and committed
# package-lock.json, with `npm ci` into a directory of the build tree;
# reused while those two files are unchanged. Never downloads a browser
# (PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1: the tests use Debian's Chromium).
#
#   npm_install.sh NAME SOURCE_DIR DEST_DIR
#
# Exit status: 0 installed (or already there); 77 npm cannot reach the
# registry (a skip for CTest) — unless CI is set, where that is a failure
# too (1); anything else failed. NAME prefixes the messages.
set -euo pipefail

SKIP=77
name=${1:?usage: npm_install.sh NAME SOURCE_DIR DEST_DIR}
src=${2:?usage: npm_install.sh NAME SOURCE_DIR DEST_DIR}
deps=${3:?usage: npm_install.sh NAME SOURCE_DIR DEST_DIR}

say() { echo "$name: $*"; }
die() {
  echo "$name: FAIL: $*" >&2
  exit 1
}
skip() {
  if [ -n "${CI:-}" ]; then
    die "$* (CI is set: a test that cannot run fails)"
  fi
  echo "$name: SKIP: $*" >&2
  exit "$SKIP"
}

command -v npm >/dev/null || die "npm not found (scripts/setup-debian installs it)"
mkdir -p "$deps"
deps=$(cd "$deps" && pwd)
stamp="$deps/.installed"
want=$(cat "$src/package.json" "$src/package-lock.json" | sha256sum | cut -d' ' -f1)

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -d "$deps/node_modules" ]; then
  say "reusing the npm packages installed in $deps"
  exit 0
fi
say "installing the npm packages with npm ci into $deps"
rm -rf "$deps/node_modules" "$stamp"
cp "$src/package.json" "$src/package-lock.json" "$deps/"
npm_log="$deps/npm-ci.log"
rc=0
# Short fetch limits: an unreachable registry is reported in seconds, not
# after npm's default five-minute timeouts and CTest's limit.
(
  cd "$deps"
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 \
    npm_config_fetch_retries=1 \
    npm_config_fetch_retry_mintimeout=1000 \
    npm_config_fetch_retry_maxtimeout=5000 \
    npm_config_fetch_timeout=30000 \
    npm_config_update_notifier=false \
    timeout 120 npm ci --no-audit --no-fund
) >"$npm_log" 2>&1 || rc=$?
if [ "$rc" -ne 0 ]; then
  registry=$(cd "$deps" && npm config get registry 2>/dev/null || echo "the npm registry")
  if [ "$rc" -eq 124 ]; then
    skip "npm ci did not finish in 120 s: $registry is unreachable or too slow (log: $npm_log)"
  fi
  # npm's codes for "could not talk to the registry" (DNS, connect, TLS
  # transport, timeouts, a proxy or registry that is down). Anything else
  # (integrity, missing version, disk, ...) is a real failure.
  net='code (ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|EHOSTUNREACH|ENETDOWN|EPIPE|ERR_SOCKET_TIMEOUT|E502|E503|E504)\b|network (request|timeout)'
  if grep -Eq "$net" "$npm_log"; then
    reason=$(grep -Em1 "$net" "$npm_log" | sed 's/^npm \(error\|ERR!\) *//')
    skip "npm cannot reach $registry ($reason); the packages are not installed. Log: $npm_log"
  fi
  sed "s/^/  npm: /" "$npm_log" >&2
  die "npm ci failed with status $rc"
fi
echo "$want" >"$stamp"
