-- wrk script of tests/bench/bench_http.py: every request posts a new batch to /v1/transactions/batch
-- (not atomic), each item a two-posting transfer between random accounts with its own external_id.
-- Arguments after "--": a file of account ids (one a line), a run id, the number of items per request,
-- and "key" to send each request with its own Idempotency-Key or "-".
-- The answer of a batch is 200 whatever its items' outcomes: response() reads the top-level counts
-- ("created", "replayed", "rejected") of each 200 so that done() reports the transfers actually posted.
-- wrk gives each thread its own Lua state; "id" is set per thread by setup(), done() sums the threads.

local accounts, run, counter, items, keyed = {}, "", 0, 1, false
local started, threads = 0, {}
created, replayed, rejected = 0, 0, 0

function setup(thread)
  started = started + 1
  thread:set("id", started)
  threads[#threads + 1] = thread
end

function init(args)
  for line in io.lines(args[1]) do
    accounts[#accounts + 1] = line
  end
  run = args[2]
  items = tonumber(args[3])
  keyed = args[4] == "key"
  math.randomseed(id * 7919 + os.time())
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

local function any_account()
  return accounts[math.random(#accounts)]
end

function request()
  counter = counter + 1
  local request_id = string.format("%s-%d-%d", run, id, counter)
  local parts = {}
  for n = 1, items do
    local debit, credit = any_account(), nil
    repeat credit = any_account() until credit ~= debit
    parts[n] = string.format(
      '{"external_id":"%s-%d","effective_date":"2026-11-23","postings":' ..
      '[{"account_id":"%s","amount":"1.00"},{"account_id":"%s","amount":"-1.00"}]}',
      request_id, n, debit, credit)
  end
  local body = '{"atomic":false,"transactions":[' .. table.concat(parts, ",") .. ']}'
  if keyed then
    -- wrk.format uses wrk.headers (with -H's Authorization) when given none: set the key there.
    wrk.headers["Idempotency-Key"] = request_id
  end
  return wrk.format(nil, "/v1/transactions/batch", nil, body)
end

function response(status, headers, body)
  if status == 200 then
    -- Compact JSON; the counts are top-level fields ahead of "results" ("created_at" has no digits after it).
    created = created + tonumber(string.match(body, '"created":(%d+)') or 0)
    replayed = replayed + tonumber(string.match(body, '"replayed":(%d+)') or 0)
    rejected = rejected + tonumber(string.match(body, '"rejected":(%d+)') or 0)
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  local total_created, total_replayed, total_rejected = 0, 0, 0
  for _, thread in ipairs(threads) do
    total_created = total_created + thread:get("created")
    total_replayed = total_replayed + thread:get("replayed")
    total_rejected = total_rejected + thread:get("rejected")
  end
  io.write(string.format(
    'WRK_RESULT {"requests": %d, "duration_us": %d, "non_2xx": %d, "socket_errors": %d, ' ..
    '"p50_us": %d, "p95_us": %d, "p99_us": %d, "created": %d, "replayed": %d, "rejected": %d}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99),
    total_created, total_replayed, total_rejected))
end
