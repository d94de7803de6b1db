#!/usr/bin/env bash
# CTest sdk_ci_no_skip: run.sh skips (77) when npm cannot reach the
# registry, except with CI set in the environment: then it fails (1), so
# that CI never passes without having run the SDK test.
#
#   ci_no_skip.sh --keygate BIN --mock BIN
#
# The registry is a loopback port nobody listens on, and npm's cache an
# empty directory, so the install fails with ECONNREFUSED in seconds.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
keygate="" mock=""
while [ $# -gt 0 ]; do
  case "$1" in
    --keygate) keygate=${2:-}; shift 2 || exit 2 ;;
    --mock) mock=${2:-}; shift 2 || exit 2 ;;
    *) echo "usage: $0 --keygate BIN --mock BIN" >&2; exit 2 ;;
  esac
done
[ -n "$keygate" ] && [ -n "$mock" ] || { echo "usage: $0 --keygate BIN --mock BIN" >&2; exit 2; }

die() {
  echo "sdk_ci_no_skip: FAIL: $*" >&2
  exit 1
}
for tool in node npm; do
  command -v "$tool" >/dev/null || die "$tool not found (scripts/setup-debian installs it)"
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/keygate-sdk-ci.XXXXXX")
mock_pid=""
cleanup() {
  [ -z "$mock_pid" ] || kill -KILL "$mock_pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

# A loopback port that was just free: a mock's, once it has stopped.
"$mock" --port 0 --port-file "$tmp/port" >/dev/null 2>&1 &
mock_pid=$!
for _ in $(seq 100); do [ -s "$tmp/port" ] && break; sleep 0.05; done
[ -s "$tmp/port" ] || die "keygate-mock did not start"
kill -TERM "$mock_pid"
wait "$mock_pid" 2>/dev/null || true
mock_pid=""
registry="http://127.0.0.1:$(cat "$tmp/port")/"

run() { # run OUT [VAR=value...]: run.sh with the dead registry; its status
  local out=$1 rc=0
  shift
  env -u CI "$@" npm_config_registry="$registry" npm_config_cache="$tmp/cache" \
    bash "$here/run.sh" --keygate "$keygate" --mock "$mock" --deps "$tmp/deps" \
    >"$out" 2>&1 || rc=$?
  echo "$rc"
}

rc=$(run "$tmp/local.out")
[ "$rc" = 77 ] || { cat "$tmp/local.out" >&2; die "without CI: exit $rc, expected 77 (skip)"; }
grep -q 'SKIP: npm cannot reach' "$tmp/local.out" || die "without CI: no reason given"
echo "sdk_ci_no_skip: without CI an unreachable registry skips (77)"

rc=$(run "$tmp/ci.out" CI=true)
[ "$rc" = 1 ] || { cat "$tmp/ci.out" >&2; die "with CI: exit $rc, expected 1 (fail)"; }
grep -q 'FAIL: npm cannot reach.*CI is set' "$tmp/ci.out" ||
  { cat "$tmp/ci.out" >&2; die "with CI: the failure does not say why"; }
echo "sdk_ci_no_skip: with CI set it fails (1)"
