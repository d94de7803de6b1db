#!/usr/bin/env bash
# CTest sdk_clients: keygate driven by the official OpenAI and Anthropic
# JavaScript SDKs (npm packages pinned in package.json / package-lock.json).
#
#   run.sh --keygate BIN --mock BIN --deps DIR
#
# 1. Installs the SDKs with `npm ci` into DIR (in the build tree), reusing
#    them while package.json and package-lock.json are unchanged.
# 2. Starts keygate-mock and `keygate serve` on ephemeral ports with the
#    configuration of scripts/run-dev, in a temporary directory, and creates
#    a key.
# 3. Runs sdk_test.mjs with the gateway URL and the key.
# 4. Checks that keygate recorded a usage row for every request it forwarded.
#
# Exit status: 0 passed, 77 skipped (npm cannot reach the registry and the
# SDKs are not installed yet; with CI set in the environment that is a
# failure instead), anything else failed.
set -euo pipefail

SKIP=77
here=$(cd "$(dirname "$0")" && pwd)
keygate="" mock="" deps=""

usage() {
  echo "usage: $0 --keygate BIN --mock BIN --deps DIR" >&2
  exit 2
}
while [ $# -gt 0 ]; do
  case "$1" in
    --keygate) keygate=${2:-}; shift 2 || usage ;;
    --mock) mock=${2:-}; shift 2 || usage ;;
    --deps) deps=${2:-}; shift 2 || usage ;;
    *) usage ;;
  esac
done
if [ -z "$keygate" ] || [ -z "$mock" ] || [ -z "$deps" ]; then usage; fi

say() { echo "sdk_clients: $*"; }
die() {
  echo "sdk_clients: FAIL: $*" >&2
  exit 1
}
# Under CI (the variable CI set, as CI services and .ci/run do) a test that
# cannot run is a failure: CI must prove what the suite claims.
skip() {
  if [ -n "${CI:-}" ]; then
    die "$* (CI is set: the SDK test must run, not skip)"
  fi
  echo "sdk_clients: SKIP: $*" >&2
  exit "$SKIP"
}

[ -x "$keygate" ] || die "no keygate binary at $keygate"
[ -x "$mock" ] || die "no keygate-mock binary at $mock"
for tool in node npm sqlite3; do
  command -v "$tool" >/dev/null ||
    die "$tool not found (scripts/setup-debian installs nodejs, npm and sqlite3)"
done
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 18 ] || die "node $(node --version) is too old: the SDKs need 18 or later"

# --------------------------------------------------------------- 1. SDKs

mkdir -p "$deps"
deps=$(cd "$deps" && pwd)
stamp="$deps/.installed"
want=$(cat "$here/package.json" "$here/package-lock.json" | sha256sum | cut -d' ' -f1)

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -d "$deps/node_modules" ]; then
  say "reusing the SDKs installed in $deps"
else
  say "installing the SDKs with npm ci into $deps"
  rm -rf "$deps/node_modules" "$stamp"
  cp "$here/package.json" "$here/package-lock.json" "$deps/"
  npm_log="$deps/npm-ci.log"
  rc=0
  # Short fetch limits: an unreachable registry is reported in seconds, not
  # after npm's default five-minute timeouts and CTest's limit.
  (
    cd "$deps"
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
    # (integrity, missing version, disk, …) is a real failure.
    net='code (ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|EHOSTUNREACH|ENETDOWN|EPIPE|ERR_SOCKET_TIMEOUT|E502|E503|E504)\b|network (request|timeout)'
    if grep -Eq "$net" "$npm_log"; then
      reason=$(grep -Em1 "$net" "$npm_log" | sed 's/^npm \(error\|ERR!\) *//')
      skip "npm cannot reach $registry ($reason); the SDKs are not installed. Log: $npm_log"
    fi
    sed 's/^/  npm: /' "$npm_log" >&2
    die "npm ci failed with status $rc"
  fi
  echo "$want" >"$stamp"
fi
# ESM resolves packages relative to the script, so it runs next to node_modules.
cp "$here/sdk_test.mjs" "$deps/sdk_test.mjs"

# ------------------------------------------------- 2. mock + keygate serve

tmp=$(mktemp -d "${TMPDIR:-/tmp}/keygate-sdk.XXXXXX")
chmod 700 "$tmp"
mock_pid="" kg_pid=""

stop() { # stop PID NAME: SIGTERM, then SIGKILL after 10 s
  local pid=$1
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "sdk_clients: $2 (pid $pid) ignored SIGTERM; killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  stop "$kg_pid" keygate
  stop "$mock_pid" keygate-mock
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

show_logs() {
  for f in keygate.log mock.err; do
    if [ -s "$tmp/$f" ]; then
      echo "---- $f (last 40 lines)" >&2
      tail -n 40 "$tmp/$f" >&2
    fi
  done
}

wait_port() { # wait_port FILE PID NAME: print the port once FILE is written
  for _ in $(seq 100); do
    if [ -s "$1" ]; then
      cat "$1"
      return 0
    fi
    kill -0 "$2" 2>/dev/null || break
    sleep 0.1
  done
  show_logs
  die "$3 did not write its port file $1"
}

# The mock refuses requests without its provider key, which keygate takes
# from the environment (api_key_env): the path of scripts/run-dev.
KG_SDK_MOCK_KEY="sk-sdk-mock-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export KG_SDK_MOCK_KEY
"$mock" --port 0 --port-file "$tmp/mock.port" --log "$tmp/mock.log" \
  --require-key-env KG_SDK_MOCK_KEY >/dev/null 2>"$tmp/mock.err" &
mock_pid=$!
mock_port=$(wait_port "$tmp/mock.port" "$mock_pid" keygate-mock)

# The configuration scripts/run-dev writes, on an ephemeral port.
cat >"$tmp/keygate.ini" <<INI
[server]
listen = 127.0.0.1:0

[admin]
listen = 127.0.0.1:0

[store]
path = state/keygate.db

[security]
hash_key_file = state/hash.key

[log]
level = info

[provider mock]
type = openai
base_url = http://127.0.0.1:$mock_port/v1
api_key_env = KG_SDK_MOCK_KEY

[provider mock-anthropic]
type = anthropic
base_url = http://127.0.0.1:$mock_port/v1
api_key_env = KG_SDK_MOCK_KEY

[model mock-gpt]
provider = mock
upstream = gpt-4o-mini
input_price = 0.15
output_price = 0.60

[model mock-claude]
provider = mock-anthropic
upstream = claude-3-5-haiku-latest
input_price = 0.80
output_price = 4.00
INI

kg() { "$keygate" --config "$tmp/keygate.ini" "$@"; }
kg config check >/dev/null || die "keygate config check failed"
kg init >/dev/null || die "keygate init failed"
token=$(kg --json keys create --name sdk-clients --ttl 1d |
  sed -n 's/^  "token": "\(.*\)",$/\1/p')
[ -n "$token" ] || die "keygate keys create printed no token"

# Started directly (not through kg) so that $! is keygate's own pid.
"$keygate" --config "$tmp/keygate.ini" serve --port-file "$tmp/keygate.port" \
  >"$tmp/keygate.log" 2>&1 &
kg_pid=$!
kg_port=$(wait_port "$tmp/keygate.port" "$kg_pid" keygate)
url="http://127.0.0.1:$kg_port"
say "keygate on $url, keygate-mock on port $mock_port"

# ------------------------------------------------------------ 3. the SDKs

# A clean environment: no OPENAI_* / ANTHROPIC_* variables, custom headers
# or credential profiles of the user running the tests reach the SDKs.
mkdir -p "$tmp/home"
rc=0
env -i PATH="$PATH" HOME="$tmp/home" TMPDIR="${TMPDIR:-/tmp}" \
  KG_URL="$url" KG_KEY="$token" KG_RESULT_FILE="$tmp/result.json" \
  node "$deps/sdk_test.mjs" || rc=$?
if [ "$rc" -ne 0 ]; then
  show_logs
  die "sdk_test.mjs exited with status $rc"
fi
[ -s "$tmp/result.json" ] || die "sdk_test.mjs wrote no result"

# ---------------------------------------------------------- 4. usage rows

# keygate commits a request's usage row before the answer (or a stream's
# final event) reaches the client, so the rows are there already.
db="$tmp/state/keygate.db"
q() { sqlite3 -batch -noheader -cmd '.timeout 5000' "$db" "$1"; }
want_of() { node -e 'const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); console.log(r.forwarded[process.argv[2]] ?? 0)' "$tmp/result.json" "$1"; }

fail=0
total_want=0
for op in chat embeddings messages; do
  want_n=$(want_of "$op")
  have_n=$(q "SELECT count(*) FROM usage_events WHERE operation = '$op' AND status = 200")
  total_want=$((total_want + want_n))
  if [ "$have_n" -ge "$want_n" ]; then
    say "usage rows: $op $have_n (forwarded $want_n)"
  else
    echo "sdk_clients: usage rows: $op $have_n, but $want_n requests were forwarded" >&2
    fail=1
  fi
done
want_n=$(want_of streamed)
have_n=$(q "SELECT count(*) FROM usage_events WHERE streamed = 1 AND status = 200")
if [ "$have_n" -lt "$want_n" ]; then
  echo "sdk_clients: usage rows: $have_n streamed, but $want_n streams were forwarded" >&2
  fail=1
fi
# Every stream was charged with the tokens the mock reported (10 in, 20 out).
bad=$(q "SELECT count(*) FROM usage_events WHERE streamed = 1 AND status = 200
         AND (prompt_tokens <> 10 OR completion_tokens <> 20 OR cost <= 0)")
if [ "$bad" -ne 0 ]; then
  echo "sdk_clients: $bad streamed usage rows without the mock's token counts:" >&2
  q "SELECT operation, model, prompt_tokens, completion_tokens, cost FROM usage_events
     WHERE streamed = 1 AND status = 200" >&2
  fail=1
fi
total_have=$(q "SELECT count(*) FROM usage_events")
say "usage rows: $total_have in all (forwarded $total_want, $want_n of them streams)"
[ "$total_have" -ge "$total_want" ] || fail=1
if [ "$fail" -ne 0 ]; then
  show_logs
  die "keygate did not record usage for every forwarded request"
fi

# ------------------------------------------------------------- 5. shutdown

# SIGTERM drains, flushes usage and exits 0 (keygate serve --help); 10 s.
kill -TERM "$kg_pid"
for _ in $(seq 100); do
  kill -0 "$kg_pid" 2>/dev/null || break
  sleep 0.1
done
if kill -0 "$kg_pid" 2>/dev/null; then
  show_logs
  die "keygate did not exit within 10 s of SIGTERM"
fi
rc=0
wait "$kg_pid" || rc=$?
kg_pid=""
if [ "$rc" -ne 0 ]; then
  show_logs
  die "keygate exited with status $rc on SIGTERM"
fi
say "passed"
