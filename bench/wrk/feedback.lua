-- POST /v1/feedback for one interaction id (a thumbs-up, no idempotency key: each is a new event).
-- usage: wrk -s feedback.lua URL -- <interaction_id>
local req
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local body = '{"interaction_id":"' .. args[1] .. '","metric":"thumbs","value":1}'
  req = wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end

function request()
  return req
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"mean":%.1f,"max":%d,"p50":%d,"p90":%d,"p99":%d,"p999":%d},"statuses":{}}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9)))
end
