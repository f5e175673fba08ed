-- wrk script for bench/load.sh: walks a file of request targets, one per line.
--
--   wrk -t T -c C -d 15s -s bench/load/paths.lua http://127.0.0.1:PORT -- FILE T
--
-- Thread i (of T) starts at line 1 + i * lines / T and walks on, wrapping at
-- the end of the file. As long as no thread sends more than lines / T
-- requests, no line is sent twice; `done` reports it when one did
-- (wrapped=1), since a repeated search may then be served from cairn's cache.
-- Requests are formatted once, in `init`, so the Lua cost per request is a
-- table lookup. `done` prints one machine-readable line:
--   RESULT requests=... duration_us=... rps=... p50_us=... p99_us=... p999_us=...
--          max_us=... connect=... read=... write=... timeout=... status=... sent=... wrapped=...
-- where `status` counts responses with a status >= 400 (wrk's count).

local threads = {}
local counter = 0

function setup(thread)
   thread:set("id", counter)
   counter = counter + 1
   table.insert(threads, thread)
end

function init(args)
   local file, nthreads = args[1], tonumber(args[2] or "1")
   if not file then
      error("usage: wrk ... -s paths.lua URL -- FILE THREADS")
   end
   reqs = {}
   for line in io.lines(file) do
      if #line > 0 then
         reqs[#reqs + 1] = wrk.format("GET", line)
      end
   end
   total = #reqs
   if total == 0 then
      error("no requests in " .. file)
   end
   slice = math.floor(total / nthreads)
   pos = (id * slice) % total + 1
   sent = 0
end

function request()
   local r = reqs[pos]
   pos = pos + 1
   if pos > total then
      pos = 1
   end
   sent = sent + 1
   return r
end

function done(summary, latency, requests)
   local sent, wrapped = 0, 0
   for _, t in ipairs(threads) do
      local s = t:get("sent") or 0
      sent = sent + s
      if s > (t:get("slice") or 0) then
         wrapped = 1
      end
   end
   local e = summary.errors
   io.write(string.format(
      "RESULT requests=%d duration_us=%d rps=%.1f p50_us=%d p99_us=%d p999_us=%d max_us=%d mean_us=%.1f " ..
      "connect=%d read=%d write=%d timeout=%d status=%d sent=%d wrapped=%d\n",
      summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
      latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max, latency.mean,
      e.connect, e.read, e.write, e.timeout, e.status, sent, wrapped))
end
