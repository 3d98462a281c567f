-- Memory scenario: every request carries the next token of a file, round robin,
-- and the thread stops itself after BENCH_MAX_REQUESTS requests (0: no limit),
-- printing BENCH_LIMIT_REACHED so that bench/wrk.py ends wrk's run right there
-- (wrk's main thread would otherwise sleep out the whole -d duration).
-- Reading from BENCH_TOKENS_FILE keeps 100k tokens out of the command line.
local tokens = {}
local count = 0
local stopped = false
local limit = tonumber(os.getenv("BENCH_MAX_REQUESTS") or "0")
local target = os.getenv("BENCH_PATH") or "/admin"

init = function(args)
  for line in io.lines(os.getenv("BENCH_TOKENS_FILE")) do
    if #line > 0 then tokens[#tokens + 1] = "Bearer " .. line end
  end
  if #tokens == 0 then error("no tokens in " .. tostring(os.getenv("BENCH_TOKENS_FILE"))) end
end

request = function()
  if limit > 0 and count >= limit and not stopped then
    stopped = true
    wrk.thread:stop()
    io.write("BENCH_LIMIT_REACHED\n")
    io.flush()
  end
  local token = tokens[count % #tokens + 1]
  count = count + 1
  return wrk.format(nil, target, { ["Authorization"] = token, ["Host"] = wrk.headers["Host"] })
end
