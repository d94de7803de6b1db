#!/usr/bin/env bash
# Self-test of keygate-mock: starts it on an ephemeral loopback port and
# checks every mode with curl. Usage: selftest.sh /path/to/keygate-mock
set -u

MOCK=${1:?usage: selftest.sh /path/to/keygate-mock}
DIR=$(mktemp -d "${TMPDIR:-/tmp}/kg-mock-selftest.XXXXXX")
PID=
FAILS=0
CHECKS=0

cleanup() {
  if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
    kill -KILL "$PID" 2>/dev/null
  fi
  rm -rf "$DIR"
}
trap cleanup EXIT

fail() {
  FAILS=$((FAILS + 1))
  echo "FAIL: $*"
}

check() { # check DESCRIPTION COMMAND...
  local what=$1
  shift
  CHECKS=$((CHECKS + 1))
  if "$@"; then
    echo "ok: $what"
  else
    fail "$what"
  fi
}

has() { grep -q -- "$2" "$1"; }
lacks() { ! grep -q -- "$2" "$1"; }
count_is() { [ "$(grep -c -- "$2" "$1")" -eq "$3" ]; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# curl bounded in time: body to OUTFILE, headers to OUTFILE.h, exit code to
# OUTFILE.rc.
fetch() { # fetch OUTFILE [curl args...]
  local out=$1
  shift
  local rc=0
  curl -sS -N --max-time 10 -D "$out.h" -o "$out" "$@" 2>"$out.err" ||
    rc=$?
  echo "$rc" >"$out.rc"
}
rc_is() { [ "$(cat "$1.rc")" -eq "$2" ]; }
status_is() { head -n1 "$1.h" | grep -q " $2"; }

# --- start -----------------------------------------------------------------
"$MOCK" --listen 127.0.0.1 --port 0 --port-file "$DIR/port" \
  --log "$DIR/log" --threads 2 >"$DIR/stdout" 2>"$DIR/stderr" &
PID=$!
PORT=
for _ in $(seq 100); do
  if grep -q '^PORT [0-9]*$' "$DIR/stdout" 2>/dev/null; then
    PORT=$(sed -n 's/^PORT \([0-9]*\)$/\1/p' "$DIR/stdout")
    break
  fi
  sleep 0.05
done
if [ -z "$PORT" ]; then
  echo "FAIL: no PORT line"
  cat "$DIR/stderr"
  exit 1
fi
U=http://127.0.0.1:$PORT
check "one PORT line on stdout" count_is "$DIR/stdout" '^PORT' 1
check "port file holds the port" [ "$(cat "$DIR/port")" = "$PORT" ]

# --- JSON answers ----------------------------------------------------------
fetch "$DIR/ok" "$U/v1/chat/completions" -d '{"model":"gpt-x","messages":[]}'
check "ok: 200" status_is "$DIR/ok" 200
check "ok: usage" has "$DIR/ok" '"usage":{"prompt_tokens":10,"completion_tokens":20,"total_tokens":30}'
check "ok: model echoed" has "$DIR/ok" '"model":"gpt-x"'

fetch "$DIR/ok2" "$U/v1/chat/completions" \
  -d '{"model":"m","mock":{"prompt_tokens":3,"completion_tokens":4}}'
check "ok: mock token counts" has "$DIR/ok2" '"total_tokens":7'

fetch "$DIR/an" "$U/v1/messages" -d '{"model":"claude-x"}'
check "anthropic: message JSON" has "$DIR/an" '"type":"message"'
check "anthropic: usage" has "$DIR/an" '"usage":{"input_tokens":10,"output_tokens":20}'

fetch "$DIR/ct" "$U/v1/messages/count_tokens" -d '{"model":"c"}'
check "count_tokens" has "$DIR/ct" '{"input_tokens":10}'
fetch "$DIR/em" "$U/v1/embeddings" -d '{"model":"e","input":["a","b"]}'
check "embeddings: two vectors" has "$DIR/em" '"index":1'
check "embeddings: usage" has "$DIR/em" '"usage":{"prompt_tokens":10'
fetch "$DIR/mo" "$U/v1/moderations" -d '{"input":"x"}'
check "moderations" has "$DIR/mo" '"flagged":false'
fetch "$DIR/ml" "$U/v1/models"
check "models list" has "$DIR/ml" '"object":"list"'
fetch "$DIR/nf" "$U/v1/nothing" -d '{}'
check "unknown path: 404" status_is "$DIR/nf" 404
fetch "$DIR/bad" "$U/v1/chat/completions" -H 'x-mock-mode: no_such_mode'
check "unknown mode: 400" status_is "$DIR/bad" 400

# --- streams ---------------------------------------------------------------
fetch "$DIR/st" "$U/v1/chat/completions" -d '{"model":"s","stream":true}'
check "stream: event-stream" grep -qi '^content-type: text/event-stream' "$DIR/st.h"
check "stream: 5 chunks" count_is "$DIR/st" 'chat.completion.chunk' 5
check "stream: no usage unasked" lacks "$DIR/st" '"usage":{'
check "stream: ends with [DONE]" [ "$(tail -c 14 "$DIR/st")" = "data: [DONE]" ]

fetch "$DIR/su" "$U/v1/chat/completions" \
  -d '{"model":"s","stream":true,"stream_options":{"include_usage":true},"mock":{"events":3}}'
check "stream usage: 3 chunks + usage" count_is "$DIR/su" 'chat.completion.chunk' 4
check "stream usage: usage event" has "$DIR/su" '"choices":\[\],"usage":{"prompt_tokens":10'
check "stream usage: [DONE] last" [ "$(tail -c 14 "$DIR/su")" = "data: [DONE]" ]

fetch "$DIR/as" "$U/v1/messages" -d '{"model":"c","stream":true}'
check "anthropic stream: message_start" has "$DIR/as" '^event: message_start'
check "anthropic stream: input_tokens" has "$DIR/as" '"input_tokens":10,"output_tokens":1'
check "anthropic stream: 5 deltas" count_is "$DIR/as" '^event: content_block_delta' 5
check "anthropic stream: message_delta usage" has "$DIR/as" '"usage":{"output_tokens":20}'
check "anthropic stream: message_stop" has "$DIR/as" '^event: message_stop'

# --- echo, status, redirect ------------------------------------------------
fetch "$DIR/ec" "$U/v1/anything?x=1" -H 'x-mock-mode: echo' \
  -H 'Authorization: Bearer sk-test-123' -H 'X-Api-Key: k2' -d 'raw body'
check "echo: authorization" has "$DIR/ec" '"authorization":"Bearer sk-test-123"'
check "echo: x-api-key" has "$DIR/ec" '"x-api-key":"k2"'
check "echo: body" has "$DIR/ec" '"body":"raw body"'
check "echo: path and query" has "$DIR/ec" '"path":"/v1/anything","query":"x=1"'

fetch "$DIR/s429" "$U/v1/chat/completions" -d '{"model":"mock-status-429"}'
check "status 429" status_is "$DIR/s429" 429
check "status 429: Retry-After 7" grep -qi '^retry-after: 7' "$DIR/s429.h"
check "status 429: error body" has "$DIR/s429" '"error":{'
fetch "$DIR/s503" "$U/v1/chat/completions" -H 'x-mock-mode: status 503' \
  -d '{"mock":{"retry_after":3}}'
check "status 503 by header, Retry-After 3" grep -qi '^retry-after: 3' "$DIR/s503.h"
fetch "$DIR/s500" "$U/v1/chat/completions" -d '{"mock":{"mode":"status","status":500}}'
check "status 500 by mock object" status_is "$DIR/s500" 500

fetch "$DIR/rd" "$U/v1/chat/completions" -H 'x-mock-mode: redirect'
check "redirect: 302" status_is "$DIR/rd" 302
check "redirect: Location" grep -qi '^location: http://127.0.0.1:1/elsewhere' "$DIR/rd.h"

# --- faults ----------------------------------------------------------------
fetch "$DIR/hb" "$U/v1/chat/completions" -H 'x-mock-mode: hang_before_headers' \
  --max-time 1 &
HB=$!
sleep 0.2
T0=$(now_ms)
fetch "$DIR/ok3" "$U/v1/chat/completions" -d '{}'
T1=$(now_ms)
check "a hang does not block others" [ $((T1 - T0)) -lt 500 ]
wait "$HB"
check "hang_before_headers: client times out" rc_is "$DIR/hb" 28
check "hang_before_headers: no status" [ ! -s "$DIR/hb.h" ]

fetch "$DIR/hm" "$U/v1/chat/completions" -d '{"model":"mock-hang_mid_stream"}' \
  --max-time 1
check "hang_mid_stream: times out" rc_is "$DIR/hm" 28
check "hang_mid_stream: 2 events" count_is "$DIR/hm" '^data: ' 2

fetch "$DIR/rb" "$U/v1/chat/completions" -H 'x-mock-mode: reset_before_headers'
check "reset_before_headers: reset" rc_is "$DIR/rb" 56
fetch "$DIR/rm" "$U/v1/chat/completions" -H 'x-mock-mode: reset_mid_stream'
check "reset_mid_stream: reset" rc_is "$DIR/rm" 56
check "reset_mid_stream: 2 events" count_is "$DIR/rm" '^data: ' 2
fetch "$DIR/cm" "$U/v1/chat/completions" -H 'x-mock-mode: close_mid_stream' \
  -d '{"stream":true,"stream_options":{"include_usage":true}}'
check "close_mid_stream: partial transfer" rc_is "$DIR/cm" 18
check "close_mid_stream: 2 events, no usage" count_is "$DIR/cm" '^data: ' 2
fetch "$DIR/gb" "$U/v1/chat/completions" -H 'x-mock-mode: garbage'
check "garbage: not HTTP" [ "$(cat "$DIR/gb.rc")" -ne 0 ]

fetch "$DIR/hg" "$U/v1/chat/completions" -H 'x-mock-mode: huge' --max-time 1
check "huge: still sending at the timeout" rc_is "$DIR/hg" 28
check "huge: over 1 MB" [ "$(stat -c %s "$DIR/hg")" -gt 1000000 ]

T0=$(now_ms)
fetch "$DIR/sd" "$U/v1/chat/completions" -d '{"model":"mock-slow_drip","mock":{"interval_ms":10}}'
T1=$(now_ms)
check "slow_drip: whole JSON" has "$DIR/sd" '"total_tokens":30}}$'
check "slow_drip: took a while" [ $((T1 - T0)) -ge 200 ]

head -c $((16 * 1024 * 1024 + 1)) /dev/zero >"$DIR/big"
fetch "$DIR/tl" "$U/v1/chat/completions" --data-binary @"$DIR/big"
check "body over 16 MiB: 413" status_is "$DIR/tl" 413

# --- 200 concurrent slow streams ---------------------------------------------
T0=$(now_ms)
curl -sS --max-time 15 -Z --parallel-max 200 --parallel-immediate \
  -d '{"model":"p","stream":true,"mock":{"events":5,"interval_ms":50}}' \
  "$U/v1/chat/completions?i=[1-200]" -o "$DIR/par_#1" 2>"$DIR/par.err"
T1=$(now_ms)
DONE=0
for f in "$DIR"/par_*; do
  if [ "$(grep -c 'chat.completion.chunk' "$f")" -eq 5 ] &&
    [ "$(tail -c 14 "$f")" = "data: [DONE]" ]; then
    DONE=$((DONE + 1))
  fi
done
check "200 concurrent streams complete ($DONE)" [ "$DONE" -eq 200 ]
check "200 concurrent streams in parallel ($((T1 - T0)) ms)" \
  [ $((T1 - T0)) -lt 5000 ]

# --- the log ---------------------------------------------------------------
for _ in $(seq 40); do
  grep -q '"reason":"client_gone"' "$DIR/log" && break
  sleep 0.05
done
check "log: request lines" has "$DIR/log" '"mode":"echo"'
check "log: headers logged" has "$DIR/log" '"authorization":"Bearer sk-test-123"'
check "log: completed streams" [ "$(grep -c '"reason":"complete"' "$DIR/log")" -ge 200 ]
check "log: abandoned stream closed" has "$DIR/log" '"sent_events":2,"reason":"client_gone"'
check "log: reset stream" has "$DIR/log" '"reason":"reset"'

# --- --require-key-env: a provider key checked like a real provider --------
KEYED_PID=
KG_MOCK_SELFTEST_KEY=sk-mock-selftest-1f2e3d \
  "$MOCK" --port 0 --port-file "$DIR/kport" --require-key-env KG_MOCK_SELFTEST_KEY \
  >/dev/null 2>"$DIR/kstderr" &
KEYED_PID=$!
for _ in $(seq 100); do [ -s "$DIR/kport" ] && break; sleep 0.05; done
K=http://127.0.0.1:$(cat "$DIR/kport")
fetch "$DIR/k0" "$K/v1/chat/completions" -d '{"model":"m"}'
check "key: none → 401" status_is "$DIR/k0" 401
check "key: provider-shaped error" has "$DIR/k0" '"code":"invalid_api_key"'
fetch "$DIR/k1" "$K/v1/chat/completions" -H 'Authorization: Bearer sk-wrong' -d '{"model":"m"}'
check "key: wrong → 401" status_is "$DIR/k1" 401
fetch "$DIR/k2" "$K/v1/chat/completions" -H 'Authorization: Bearer sk-mock-selftest-1f2e3d' \
  -d '{"model":"m"}'
check "key: Bearer → 200" status_is "$DIR/k2" 200
fetch "$DIR/k3" "$K/v1/messages" -H 'x-api-key: sk-mock-selftest-1f2e3d' -d '{"model":"c"}'
check "key: x-api-key → 200" status_is "$DIR/k3" 200
kill -TERM "$KEYED_PID" 2>/dev/null
wait "$KEYED_PID" 2>/dev/null
check "key: nothing on stderr" [ ! -s "$DIR/kstderr" ]
rc=0
env -u KG_MOCK_SELFTEST_UNSET "$MOCK" --port 0 --require-key-env KG_MOCK_SELFTEST_UNSET \
  >/dev/null 2>"$DIR/kunset" || rc=$?
check "key: unset variable → exit 2" [ "$rc" -eq 2 ]
check "key: unset variable named" has "$DIR/kunset" 'KG_MOCK_SELFTEST_UNSET is not set'

# --- shutdown --------------------------------------------------------------
fetch "$DIR/hz" "$U/v1/chat/completions" -H 'x-mock-mode: hang_before_headers' \
  --max-time 5 &
HZ=$!
sleep 0.2
kill -TERM "$PID"
RC=
for _ in $(seq 100); do
  if ! kill -0 "$PID" 2>/dev/null; then
    wait "$PID"
    RC=$?
    break
  fi
  sleep 0.05
done
PID_DONE=$PID
PID=
wait "$HZ"
check "SIGTERM with a hung request: exit 0 (rc=${RC:-running})" [ "${RC:-1}" = 0 ]
if [ -z "$RC" ]; then
  kill -KILL "$PID_DONE" 2>/dev/null
fi
check "nothing on stderr" [ ! -s "$DIR/stderr" ]
if [ -s "$DIR/stderr" ]; then
  head -20 "$DIR/stderr"
fi

echo "$((CHECKS - FAILS))/$CHECKS checks passed"
[ "$FAILS" -eq 0 ]
