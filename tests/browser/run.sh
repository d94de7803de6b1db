#!/usr/bin/env bash
# CTest browser_dashboard: the dashboard driven in Debian's Chromium by
# playwright-core (pinned in package.json / package-lock.json).
#
#   run.sh --keygate BIN --mock BIN --deps DIR --out DIR
#
# Installs playwright-core with `npm ci` into DIR (tests/npm_install.sh),
# then runs dashboard_test.mjs, which starts keygate-mock and `keygate
# serve` itself and saves a screenshot of each page into --out.
#
# Exit status: 0 passed, 77 skipped (npm cannot reach the registry and the
# package is not installed yet, and CI is not set), anything else failed.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
keygate="" mock="" deps="" out=""

usage() {
  echo "usage: $0 --keygate BIN --mock BIN --deps DIR --out DIR" >&2
  exit 2
}
while [ $# -gt 0 ]; do
  case "$1" in
    --keygate) keygate=${2:-}; shift 2 || usage ;;
    --mock) mock=${2:-}; shift 2 || usage ;;
    --deps) deps=${2:-}; shift 2 || usage ;;
    --out) out=${2:-}; shift 2 || usage ;;
    *) usage ;;
  esac
done
if [ -z "$keygate" ] || [ -z "$mock" ] || [ -z "$deps" ] || [ -z "$out" ]; then usage; fi

die() {
  echo "browser_dashboard: FAIL: $*" >&2
  exit 1
}

[ -x "$keygate" ] || die "no keygate binary at $keygate"
[ -x "$mock" ] || die "no keygate-mock binary at $mock"
[ -x /usr/bin/chromium ] || die "no /usr/bin/chromium (scripts/setup-debian installs Debian's chromium)"
command -v node >/dev/null || die "node not found (scripts/setup-debian installs nodejs)"
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 18 ] || die "node $(node --version) is too old: playwright-core needs 18 or later"

bash "$here/../npm_install.sh" browser_dashboard "$here" "$deps"
# ESM resolves packages relative to the script, so it runs next to node_modules.
cp "$here/dashboard_test.mjs" "$deps/dashboard_test.mjs"
mkdir -p "$out"
exec node "$deps/dashboard_test.mjs" --keygate "$keygate" --mock "$mock" --out "$out"
