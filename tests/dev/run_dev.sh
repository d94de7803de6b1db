#!/usr/bin/env bash
# CTest run_dev: scripts/run-dev as a new user meets it, with the binaries of
# this build (KEYGATE_NO_BUILD=1), a temporary directory and any free port.
#
#   run_dev.sh --build-dir DIR
#
# 1. A run serves: the printed key answers /v1/models and a chat completion
#    through the bundled mock, which refuses requests without its provider
#    key (the pool path of docs/policy.md).
# 2. The CLI lines it prints ('. <dir>/env', 'keygate keys list') reach its
#    store from a clean shell.
# 3. A second run while it serves refuses at once, says how to choose
#    another port, and changes nothing (configuration, key file, store).
# 4. The next run reuses the one development key: still one key, same token.
# 5. A port taken by another program is refused before anything is made.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=""
while [ $# -gt 0 ]; do
  case "$1" in
    --build-dir) build=${2:-}; shift 2 || exit 2 ;;
    *) echo "usage: $0 --build-dir DIR" >&2; exit 2 ;;
  esac
done
[ -n "$build" ] || { echo "usage: $0 --build-dir DIR" >&2; exit 2; }
build=$(cd "$build" && pwd)

say() { echo "run_dev: $*"; }
die() {
  echo "run_dev: FAIL: $*" >&2
  exit 1
}

for tool in curl sqlite3 flock sha256sum; do
  command -v "$tool" >/dev/null || die "$tool not found"
done
[ -x "$build/keygate" ] || die "no keygate binary in $build"
[ -x "$build/tests/mock/keygate-mock" ] || die "no keygate-mock in $build"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/keygate-run-dev.XXXXXX")
dev=$tmp/dev
run_pid="" holder_pid=""

stop_pid() { # stop_pid PID: SIGTERM, then SIGKILL after 15 s
  local pid=$1
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 150); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  stop_pid "$run_pid"
  # Whatever a failed run left behind (its own pid files name them).
  for f in "$dev/keygate.pid" "$tmp/holder.pid"; do
    if [ -s "$f" ]; then
      kill -KILL "$(cat "$f")" 2>/dev/null || true
    fi
  done
  stop_pid "$holder_pid"
  rm -rf "$tmp"
}
trap cleanup EXIT

show() {
  for f in "$tmp"/run*.out; do
    [ -s "$f" ] && { echo "---- $f" >&2; tail -n 30 "$f" >&2; }
  done
  return 0
}

run_dev() { # run_dev PORT DIR: scripts/run-dev with this build (in a
  # background subshell, so that $! is run-dev's own pid)
  KEYGATE_PORT=$1 KEYGATE_DEV_DIR=$2 KEYGATE_BUILD_DIR=$build \
    KEYGATE_NO_BUILD=1 exec "$root/scripts/run-dev"
}

refused_run() { # refused_run PORT DIR OUTFILE: its exit code (bounded)
  local rc=0
  KEYGATE_PORT=$1 KEYGATE_DEV_DIR=$2 KEYGATE_BUILD_DIR=$build \
    KEYGATE_NO_BUILD=1 timeout 20 "$root/scripts/run-dev" >"$3" 2>&1 || rc=$?
  echo "$rc"
}

start_run() { # start_run OUTFILE: in the background until it serves
  run_dev 0 "$dev" >"$1" 2>&1 &
  run_pid=$!
  for _ in $(seq 300); do
    if [ -s "$dev/url" ] && grep -q '^Stop: Ctrl-C' "$1"; then
      return 0
    fi
    kill -0 "$run_pid" 2>/dev/null || break
    sleep 0.1
  done
  show
  die "run-dev did not start serving within 30 s"
}

stop_run() {
  local kg
  kg=$(cat "$dev/keygate.pid")
  stop_pid "$run_pid"
  run_pid=""
  ! kill -0 "$kg" 2>/dev/null || die "keygate (pid $kg) still runs after run-dev stopped"
}

http() { # http TOKEN PATH [BODY]: the status; the body in $tmp/body
  local args=(-s -o "$tmp/body" -w '%{http_code}' --max-time 10
    -H "Authorization: Bearer $1")
  if [ $# -gt 2 ]; then
    args+=(-H 'Content-Type: application/json' -d "$3")
  fi
  curl "${args[@]}" "$(cat "$dev/url")$2"
}

snapshot() {
  {
    sha256sum "$dev/keygate.ini" "$dev/dev-key" "$dev/env"
    sqlite3 -batch -cmd '.timeout 5000' "$dev/state/keygate.db" .dump | sha256sum
  } 2>&1
}

chat='{"model":"mock-gpt","messages":[{"role":"user","content":"Hello"}]}'

# ---------------------------------------------------------------- 1. serves
start_run "$tmp/run1.out"
token=$(cat "$dev/dev-key")
[ "$(stat -c %a "$dev/dev-key")" = 600 ] || die "dev-key is not mode 0600"
grep -qF "$token" "$tmp/run1.out" || die "the key is not in the output"
[ "$(http "$token" /v1/models)" = 200 ] || die "/v1/models: $(cat "$tmp/body")"
grep -q '"mock-gpt"' "$tmp/body" || die "/v1/models lacks mock-gpt"
[ "$(http "$token" /v1/chat/completions "$chat")" = 200 ] ||
  die "chat: $(cat "$tmp/body")"
grep -q 'Hello from keygate-mock' "$tmp/body" || die "chat: $(cat "$tmp/body")"
grep -q '"mode":"unauthorized"' "$dev/mock.log" &&
  die "the mock saw a request without its key"
say "serves: /v1/models and a chat completion through the keyed mock"

# The dashboard's address and an admin token that signs in, next to the key.
admin_token=$(cat "$dev/admin-token")
admin_url=$(cat "$dev/admin-url")
[ "$(stat -c %a "$dev/admin-token")" = 600 ] || die "admin-token is not mode 0600"
grep -qF "$admin_token" "$tmp/run1.out" || die "the admin token is not in the output"
grep -qF "Dashboard: $admin_url/" "$tmp/run1.out" || die "no dashboard address"
[ "$(curl -s -o "$tmp/body" -w '%{http_code}' --max-time 10 "$admin_url/")" = 200 ] ||
  die "the dashboard page: $(head -c 200 "$tmp/body")"
grep -qi '<html' "$tmp/body" || die "the dashboard page is not HTML"
[ "$(curl -s -o "$tmp/body" -w '%{http_code}' --max-time 10 \
  -H 'Content-Type: application/json' -d "{\"token\":\"$admin_token\"}" \
  "$admin_url/admin/v1/session")" = 201 ] ||
  die "the admin token does not sign in: $(cat "$tmp/body")"
say "prints the dashboard's address and an admin token that signs in"

# ------------------------------------------------- 2. the CLI lines it prints
grep -qxF "  . $dev/env" "$tmp/run1.out" || die "no '. $dev/env' line"
grep -qxF "  keygate keys list" "$tmp/run1.out" || die "no 'keygate keys list' line"
id=${token#*_}
id=${id%%_*}
out=$(env -i HOME="$tmp" PATH=/usr/bin:/bin bash -c ". '$dev/env' && keygate keys list") ||
  die "'keygate keys list' after '. env' failed: $out"
grep -q "^$id  dev " <<<"$out" || die "keys list lacks the dev key: $out"
say "'. env' then 'keygate keys list' reaches the dev store"

# --------------------------------------------------- 3. a second run refuses
before=$(snapshot)
rc=$(refused_run 0 "$dev" "$tmp/run2.out")
[ "$rc" = 1 ] || { show; die "a second run exited $rc, not 1"; }
grep -q 'already serving' "$tmp/run2.out" || die "no 'already serving': $(cat "$tmp/run2.out")"
grep -q 'KEYGATE_PORT=8082 ./scripts/run-dev' "$tmp/run2.out" || die "no port advice"
[ "$(snapshot)" = "$before" ] || die "the second run changed the configuration, key or store"
[ -s "$dev/url" ] && [ -s "$dev/run-dev.pid" ] || die "the second run removed the first one's files"
[ "$(http "$token" /v1/models)" = 200 ] || die "the first run stopped serving"
say "a second run refuses and changes nothing"

# ------------------------------------------------- 4. the key is reused
stop_run
start_run "$tmp/run3.out"
[ "$(cat "$dev/dev-key")" = "$token" ] || die "the next run changed the key file"
grep -qF "$token" "$tmp/run3.out" || die "the next run printed another key"
n=$(sqlite3 -batch -cmd '.timeout 5000' "$dev/state/keygate.db" \
  "SELECT count(*) FROM api_keys")
[ "$n" = 1 ] || die "$n keys in the store after two runs, expected 1"
[ "$(http "$token" /v1/chat/completions "$chat")" = 200 ] || die "chat after a restart"
stop_run
say "the next run reuses the one development key"

# ------------------------------------------------------ 5. a port in use
"$build/tests/mock/keygate-mock" --port 0 --port-file "$tmp/holder.port" >/dev/null &
holder_pid=$!
echo "$holder_pid" >"$tmp/holder.pid"
for _ in $(seq 100); do [ -s "$tmp/holder.port" ] && break; sleep 0.1; done
[ -s "$tmp/holder.port" ] || die "the port holder did not start"
rc=$(refused_run "$(cat "$tmp/holder.port")" "$tmp/other" "$tmp/run4.out")
[ "$rc" = 1 ] || { show; die "a taken port: exit $rc, not 1"; }
grep -q 'in use by another program' "$tmp/run4.out" || die "no 'in use': $(cat "$tmp/run4.out")"
grep -q 'KEYGATE_PORT=8082' "$tmp/run4.out" || die "no port advice for a taken port"
[ ! -e "$tmp/other/keygate.ini" ] && [ ! -e "$tmp/other/state" ] ||
  die "a refused run made a configuration or a store"
say "a taken port is refused before anything is made"
say "passed"
