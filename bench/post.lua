-- wrk script for bench/run: POST a small chat completion with a key.
--   BENCH_AUTH           the Authorization header value ("Bearer kg_...")
--   BENCH_EXTRA_HEADERS  optional "Name: value|Name: value" (peer arm)
--   BENCH_BODY_FILE      optional: POST this file's bytes instead (the
--                        size sweep's bodies)
-- done() prints one "RESULT name=value ..." line; latencies in µs.
local auth = os.getenv("BENCH_AUTH") or ""
local extra = os.getenv("BENCH_EXTRA_HEADERS") or ""

wrk.method = "POST"
wrk.body = '{"model":"gpt-4o-mini","max_tokens":16,' ..
           '"messages":[{"role":"user","content":"Say hello"}]}'
local body_file = os.getenv("BENCH_BODY_FILE") or ""
if body_file ~= "" then
  local f = assert(io.open(body_file, "rb"))
  wrk.body = f:read("*a")
  f:close()
end
wrk.headers["Content-Type"] = "application/json"
if auth ~= "" then
  wrk.headers["Authorization"] = auth
end
for name, value in string.gmatch(extra, "([^:|]+):%s*([^|]+)") do
  wrk.headers[name] = value
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d connect_err=%d read_err=%d " ..
    "write_err=%d status_err=%d timeout_err=%d p50_us=%d p90_us=%d " ..
    "p99_us=%d mean_us=%.1f max_us=%d\n",
    summary.requests, summary.duration, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.mean, latency.max))
end
