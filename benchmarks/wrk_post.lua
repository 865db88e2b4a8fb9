-- wrk script of benchmarks/serving.py: POST one fixed body, print the figures as one JSON line.
--
--   BENCH_BODY=body.json BENCH_CONTENT_TYPE=application/json wrk -s wrk_post.lua ... URL
--
-- BENCH_HEADER="Name: value" adds one header (the V2 binary extension's header length).
-- done() prints "WRK_JSON {...}" with the request count and latency percentiles in microseconds
-- (wrk's own --latency table has no p95).

local path = assert(os.getenv("BENCH_BODY"), "set BENCH_BODY to the request body file")
local f = assert(io.open(path, "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = os.getenv("BENCH_CONTENT_TYPE") or "application/json"
local extra = os.getenv("BENCH_HEADER")
if extra and extra ~= "" then
  local name, value = extra:match("^([^:]+):%s*(.*)$")
  wrk.headers[name] = value
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "connect_errors": %d, '
      .. '"read_errors": %d, "write_errors": %d, "status_errors": %d, "timeouts": %d, '
      .. '"mean_us": %.1f, "p50_us": %d, "p90_us": %d, "p95_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(95), latency:percentile(99), latency.max))
end
