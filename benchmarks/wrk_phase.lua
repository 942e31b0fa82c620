-- wrk script of bench_serve.py (closed-loop phases).
--
--   wrk -t T -c C -d D -s wrk_phase.lua http://127.0.0.1:PORT -- OUT_DIR RECORD PATH [PATH ...]
--
-- Each connection sends GET PATH, cycling through the paths given (a PATH may end in a tab and the
-- User-Agent to send with it). Every response is counted as 200
-- or not; with RECORD = 1, the impression_id of each 200 response is appended to OUT_DIR/ids-N.txt
-- (one file per wrk thread; "MISSING" when a 200 has none). At the end one line
-- "BENCH_JSON {...}" gives the totals and the latency percentiles (microseconds).

local threads = {}

function setup(thread)
   table.insert(threads, thread)
   thread:set("thread_id", #threads)
end

-- per-thread state (each wrk thread has its own Lua state); ok and not_ok are read by done()
ok, not_ok = 0, 0
local requests, index, ids_file

function init(args)
   requests = {}
   for i = 3, #args do
      -- "PATH<TAB>USER-AGENT": the request carries that User-Agent (the contextual slot's device)
      local path, agent = args[i]:match("^([^\t]*)\t(.*)$")
      if path then
         requests[#requests + 1] = wrk.format("GET", path, {["User-Agent"] = agent})
      else
         requests[#requests + 1] = wrk.format("GET", args[i])
      end
   end
   index = thread_id % #requests  -- threads start at different paths
   if args[2] == "1" then
      ids_file = io.open(args[1] .. "/ids-" .. thread_id .. ".txt", "w")
      ids_file:setvbuf("line")  -- wrk has no per-thread teardown hook to flush a buffer in
   end
end

function request()
   index = index % #requests + 1
   return requests[index]
end

function response(status, headers, body)
   if status ~= 200 then
      not_ok = not_ok + 1
      return
   end
   ok = ok + 1
   if ids_file then
      ids_file:write((body:match('"impression_id"%s*:%s*"([%x%-]+)"') or "MISSING"), "\n")
   end
end

function done(summary, latency, _)
   local ok_total, not_ok_total = 0, 0
   for _, thread in ipairs(threads) do
      ok_total = ok_total + thread:get("ok")
      not_ok_total = not_ok_total + thread:get("not_ok")
   end
   local e = summary.errors
   io.write(string.format(
      'BENCH_JSON {"requests": %d, "duration_us": %d, "ok": %d, "not_ok": %d, "p50_us": %d, '
         .. '"p99_us": %d, "errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d}}\n',
      summary.requests, summary.duration, ok_total, not_ok_total, latency:percentile(50),
      latency:percentile(99), e.connect, e.read, e.write, e.timeout))
end
