-- wrk script of tests/bench/bench_http.py: every request posts a new two-posting transfer.
-- Arguments after "--": a file of account ids (one a line), the hot account's id or "-", a run id,
-- "key" to send each request with its own Idempotency-Key (as payment clients do) or "-", and
-- optionally "statuses" to count the responses by HTTP status (done() then reports them, e.g. the 429s
-- of a rate-limited run; off by default: a response() callback costs wrk some CPU per response).
-- wrk gives each thread its own Lua state; "id" is set per thread by setup(), done() sums the threads.

local accounts, hot, run, counter, keyed = {}, nil, "", 0, false
local started, threads = 0, {}
statuses = ""  -- "status=count,..." of this thread (a string: thread:get copies it to done()'s state)
local counts = {}

function setup(thread)
  started = started + 1
  thread:set("id", started)
  threads[#threads + 1] = thread
end

function init(args)
  for line in io.lines(args[1]) do
    accounts[#accounts + 1] = line
  end
  if args[2] ~= "-" then hot = args[2] end
  run = args[3]
  keyed = args[4] == "key"
  math.randomseed(id * 7919 + os.time())
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  if args[5] == "statuses" then
    -- wrk asks for response() after init(): defined here, only the runs that want it pay for it.
    response = function(status, headers, body)
      counts[status] = (counts[status] or 0) + 1
      local listed = {}
      for code, count in pairs(counts) do listed[#listed + 1] = code .. "=" .. count end
      statuses = table.concat(listed, ",")
    end
  end
end

local function any_account()
  return accounts[math.random(#accounts)]
end

function request()
  counter = counter + 1
  local debit, credit = any_account(), hot
  if credit == nil then
    repeat credit = any_account() until credit ~= debit
  end
  local external_id = string.format("%s-%d-%d", run, id, counter)
  local body = string.format(
    '{"external_id":"%s","effective_date":"2026-11-23","postings":' ..
    '[{"account_id":"%s","amount":"1.00"},{"account_id":"%s","amount":"-1.00"}]}',
    external_id, debit, credit)
  if keyed then
    -- wrk.format uses wrk.headers (with -H's Authorization) when given none: set the key there.
    wrk.headers["Idempotency-Key"] = external_id
  end
  return wrk.format(nil, "/v1/transactions", nil, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  local totals, listed = {}, {}
  for _, thread in ipairs(threads) do
    for code, count in string.gmatch(thread:get("statuses") or "", "(%d+)=(%d+)") do
      totals[code] = (totals[code] or 0) + tonumber(count)
    end
  end
  for code, count in pairs(totals) do listed[#listed + 1] = string.format('"%s": %d', code, count) end
  io.write(string.format(
    'WRK_RESULT {"requests": %d, "duration_us": %d, "non_2xx": %d, "socket_errors": %d, ' ..
    '"p50_us": %d, "p95_us": %d, "p99_us": %d, "statuses": {%s}}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), table.concat(listed, ", ")))
end
