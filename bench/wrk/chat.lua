-- POST chat completions with a rotating pool of users (so routing hashes many units).
-- usage: wrk -s chat.lua URL -- <model> <stream 0|1> [users] [delay_ms] [count_statuses 0|1]
-- Prints one line "WRKJSON {...}" with the summary the harness parses (latency in microseconds).
local bodies = {}
local n, i = 0, 0
local delay_ms = 0
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local model = args[1] or "gpt-4o-mini-2024-07-18"
  local stream = (args[2] == "1") and "true" or "false"
  local users = tonumber(args[3] or "1000")
  delay_ms = tonumber(args[4] or "0")
  local headers = {["Content-Type"] = "application/json"}
  for u = 1, users do
    local body = '{"model":"' .. model .. '","user":"bench-user-' .. u .. '","stream":' .. stream ..
      ',"max_tokens":64,"messages":[{"role":"system","content":"You are a helpful support assistant."},' ..
      '{"role":"user","content":"Where is my order #' .. u .. '? It was due yesterday."}]}'
    bodies[u] = wrk.format("POST", nil, headers, body)
  end
  n = users
  i = math.random(0, n - 1)
  if delay_ms > 0 then
    -- pacing for the soak (a fixed rate below capacity); absent otherwise, so no timer per request
    delay = function() return delay_ms end
  end
  if args[5] == "1" then
    statuses = {}
    -- defined only when asked: a response() callback makes wrk parse every body
    response = function(status, headers, body)
      statuses[status] = (statuses[status] or 0) + 1
    end
  end
end

function request()
  i = (i % n) + 1
  return bodies[i]
end

function done(summary, latency, requests)
  local e = summary.errors
  local counts = {}
  for _, t in ipairs(threads) do
    local s = t:get("statuses")
    if s then
      for k, v in pairs(s) do counts[tostring(k)] = (counts[tostring(k)] or 0) + v end
    end
  end
  local parts = {}
  for k, v in pairs(counts) do table.insert(parts, '"' .. k .. '":' .. v) end
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"mean":%.1f,"max":%d,"p50":%d,"p90":%d,"p99":%d,"p999":%d},"statuses":{%s}}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), table.concat(parts, ",")))
end
