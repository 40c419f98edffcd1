-- The one wrk script of the Raft3D benchmark (see docs/performance.md).
--
--   wrk ... -s workload.lua URL -- SYSTEM WORKLOAD TAG [QUOTA] [FIXTURE...]
--
-- SYSTEM is raft3d or etcd (the etcd v3 JSON gateway); WORKLOAD one of
-- create, read, stale, stale_writes, mixed, page, load_printers, load_filaments, load_jobs;
-- TAG makes this wrk process's keys unique (with the thread number and a
-- counter); QUOTA (0 = none) stops each thread once that many 2xx answers
-- came back (the scale run's loader); FIXTURE are the ids or keys the
-- workload needs (created by the harness beforehand).
--
-- done() prints one line "BENCH_JSON {...}" with wrk's summary, every
-- status code seen, the operations sent and latency percentiles on a fixed
-- grid, which the harness parses and merges across concurrent wrk processes.

local system, workload, tag
local quota = 0
local fixture = {}
local counter = 0
-- Globals, not locals: done() reads them from each thread with thread:get().
ok = 0
non2xx = 0
codes = {}
ops = {}
first_error = ""
local queued = {}
local running = {}
local moving = {}
local known = nil

-- base64 ------------------------------------------------------------------

local b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function b64(data)
   local out = {}
   local len = #data
   for i = 1, len, 3 do
      local a, b, c = data:byte(i, i + 2)
      local n = a * 65536 + (b or 0) * 256 + (c or 0)
      local c1 = math.floor(n / 262144) % 64
      local c2 = math.floor(n / 4096) % 64
      local c3 = math.floor(n / 64) % 64
      local c4 = n % 64
      out[#out + 1] = b64chars:sub(c1 + 1, c1 + 1) .. b64chars:sub(c2 + 1, c2 + 1)
      if b then
         out[#out + 1] = b64chars:sub(c3 + 1, c3 + 1)
      else
         out[#out + 1] = "="
      end
      if c then
         out[#out + 1] = b64chars:sub(c4 + 1, c4 + 1)
      else
         out[#out + 1] = "="
      end
   end
   return table.concat(out)
end

-- requests ----------------------------------------------------------------

local json_headers = { ["Content-Type"] = "application/json" }

local function post(path, body)
   return wrk.format("POST", path, json_headers, body)
end

local function get(path)
   return wrk.format("GET", path, {}, nil)
end

local function count(op)
   ops[op] = (ops[op] or 0) + 1
end

local function unique()
   counter = counter + 1
   return tag .. "-" .. tid .. "-" .. counter
end

local function printer_body(name)
   return '{"company":"Bench","model":"' .. name .. '"}'
end

local function etcd_put(key, value)
   return post("/v3/kv/put", '{"key":"' .. b64(key) .. '","value":"' .. b64(value) .. '"}')
end

local function etcd_range(key, serializable)
   local extra = ""
   if serializable then
      extra = ',"serializable":true'
   end
   return post("/v3/kv/range", '{"key":"' .. b64(key) .. '"' .. extra .. "}")
end

local function job_body(name)
   return '{"printer_id":"' .. fixture[1] .. '","filament_id":"' .. fixture[2]
      .. '","filepath":"bench/' .. name .. '.gcode","print_weight_in_grams":1}'
end

local function pick(list)
   -- Fixture lists (the scale loader's printers and filaments) rotate.
   return list[(counter % #list) + 1]
end

local function raft3d_mixed()
   -- One job cycle is four operations: create, read, Running, Done.
   -- Transitions only use ids whose previous step was seen to succeed.
   local slot = counter % 4
   if slot == 1 and known then
      counter = counter + 1
      count("read")
      return get("/api/v1/print_jobs/" .. known)
   elseif slot == 2 and #queued > 0 then
      counter = counter + 1
      count("update")
      local id = table.remove(queued, 1)
      moving[id] = true
      return post("/api/v1/print_jobs/" .. id .. "/status?status=Running", "")
   elseif slot == 3 and #running > 0 then
      counter = counter + 1
      count("update")
      return post("/api/v1/print_jobs/" .. table.remove(running, 1) .. "/status?status=Done", "")
   end
   if slot ~= 0 then
      count("create_fallback")
   end
   count("create")
   return post("/api/v1/print_jobs", job_body(unique()))
end

local function etcd_mixed()
   -- The same cycle as puts and a linearizable range on the job's key.
   local slot = counter % 4
   if slot == 0 or not known then
      known = unique()
      count("create")
      return etcd_put("bench/" .. known, job_body(known))
   end
   counter = counter + 1
   if slot == 1 then
      count("read")
      return etcd_range("bench/" .. known, false)
   end
   count("update")
   return etcd_put("bench/" .. known, '{"status":"' .. (slot == 2 and "Running" or "Done") .. '"}')
end

local builders = {
   raft3d = {
      create = function()
         count("create")
         return post("/api/v1/printers", printer_body(unique()))
      end,
      read = function()
         count("read")
         return get("/api/v1/printers/" .. fixture[1])
      end,
      stale = function()
         count("read")
         return get("/api/v1/printers/" .. fixture[1] .. "?consistency=stale")
      end,
      mixed = raft3d_mixed,
      page = function()
         count("read")
         return get(fixture[1])
      end,
      load_printers = function()
         count("create")
         return post("/api/v1/printers", printer_body(unique()))
      end,
      load_filaments = function()
         count("create")
         unique()
         return post("/api/v1/filaments",
            '{"type":"PLA","color":"red","total_weight_in_grams":1000000000}')
      end,
      load_jobs = function()
         count("create")
         local name = unique()
         return post("/api/v1/print_jobs", '{"printer_id":"' .. pick(fixture.printers)
            .. '","filament_id":"' .. pick(fixture.filaments)
            .. '","filepath":"bench/' .. name .. '.gcode","print_weight_in_grams":1}')
      end,
   },
   etcd = {
      create = function()
         count("create")
         local name = unique()
         return etcd_put("bench/" .. name, printer_body(name))
      end,
      read = function()
         count("read")
         return etcd_range(fixture[1], false)
      end,
      stale = function()
         count("read")
         return etcd_range(fixture[1], true)
      end,
      mixed = etcd_mixed,
   },
}

-- Stale reads of one object while another wrk creates objects (the
-- harness runs that one with WORKLOAD create).
builders.raft3d.stale_writes = builders.raft3d.stale
builders.etcd.stale_writes = builders.etcd.stale

local builder

-- wrk hooks ---------------------------------------------------------------

local finished = false

local function finish()
   -- Quota reached: stop this thread, and wake wrk's main thread (which
   -- otherwise sleeps for the whole -d) with the SIGINT it handles as
   -- "stop now".  The loader runs one thread per wrk process.
   if finished then
      return
   end
   finished = true
   wrk.thread:stop()
   local ok_ffi, ffi = pcall(require, "ffi")
   if ok_ffi then
      pcall(ffi.cdef, "int kill(int pid, int sig); int getpid(void);")
      ffi.C.kill(ffi.C.getpid(), 2)
   end
end

local threads = {}

function setup(thread)
   thread:set("tid", #threads + 1)
   table.insert(threads, thread)
end

function init(args)
   system, workload, tag = args[1], args[2], args[3]
   quota = tonumber(args[4] or "0") or 0
   for i = 5, #args do
      fixture[#fixture + 1] = args[i]
   end
   if workload == "load_jobs" then
      -- FIXTURE is "printers" ids... "filaments" ids...
      local into = nil
      fixture.printers, fixture.filaments = {}, {}
      for _, value in ipairs(fixture) do
         if value == "printers" or value == "filaments" then
            into = fixture[value]
         elseif into then
            into[#into + 1] = value
         end
      end
   end
   builder = builders[system] and builders[system][workload]
   if not builder then
      error("unknown system/workload " .. tostring(system) .. "/" .. tostring(workload))
   end
end

function request()
   return builder()
end

function response(status, headers, body)
   codes[status] = (codes[status] or 0) + 1
   if status >= 200 and status < 300 then
      ok = ok + 1
      if workload == "mixed" and system == "raft3d" and body then
         local id = body:match('^{"id":"([^"]+)"')
         if id then
            if status == 201 then
               queued[#queued + 1] = id
               known = id
            elseif moving[id] and body:find('"status":"Running"', 1, true) then
               -- Once per job: a read of the job can show Running too.
               moving[id] = nil
               running[#running + 1] = id
            end
         end
      end
      if quota > 0 and ok >= quota then
         finish()
      end
   else
      non2xx = non2xx + 1
      if first_error == "" then
         first_error = status .. " " .. (body or ""):sub(1, 300)
      end
   end
end

-- report ------------------------------------------------------------------

local function quote(s)
   s = tostring(s):gsub('[%c"\\]', function(c)
      return string.format("\\u%04x", c:byte())
   end)
   return '"' .. s .. '"'
end

local function object(t)
   local parts = {}
   for k, v in pairs(t) do
      parts[#parts + 1] = quote(k) .. ":" .. tostring(v)
   end
   return "{" .. table.concat(parts, ",") .. "}"
end

local grid = {}
for p = 1, 99 do grid[#grid + 1] = p end
for i = 1, 9 do grid[#grid + 1] = 99 + i / 10 end
for i = 1, 9 do grid[#grid + 1] = 99.9 + i / 100 end
for i = 1, 9 do grid[#grid + 1] = 99.99 + i / 1000 end

function done(summary, latency, requests)
   local all_codes, all_ops = {}, {}
   local total_non2xx, total_ok, errors_seen = 0, 0, {}
   for _, thread in ipairs(threads) do
      for code, n in pairs(thread:get("codes") or {}) do
         all_codes[code] = (all_codes[code] or 0) + n
      end
      for op, n in pairs(thread:get("ops") or {}) do
         all_ops[op] = (all_ops[op] or 0) + n
      end
      total_non2xx = total_non2xx + (thread:get("non2xx") or 0)
      total_ok = total_ok + (thread:get("ok") or 0)
      local e = thread:get("first_error")
      if e and e ~= "" then
         errors_seen[#errors_seen + 1] = quote(e)
      end
   end
   local points = {}
   if summary.requests > 0 then
      points[1] = "[0," .. latency.min .. "]"
      for _, p in ipairs(grid) do
         points[#points + 1] = "[" .. p .. "," .. latency:percentile(p) .. "]"
      end
      points[#points + 1] = "[100," .. latency.max .. "]"
   end
   local e = summary.errors
   local mean, stdev = 0, 0
   if summary.requests > 0 then
      mean, stdev = latency.mean, latency.stdev
   end
   io.write("BENCH_JSON {",
      '"duration_us":', summary.duration,
      ',"requests":', summary.requests,
      ',"bytes":', summary.bytes,
      ',"errors":{"connect":', e.connect, ',"read":', e.read, ',"write":', e.write,
      ',"status":', e.status, ',"timeout":', e.timeout, "}",
      ',"ok":', total_ok,
      ',"non2xx":', total_non2xx,
      ',"codes":', object(all_codes),
      ',"ops":', object(all_ops),
      ',"first_errors":[', table.concat(errors_seen, ","), "]",
      ',"latency_mean_us":', mean,
      ',"latency_stdev_us":', stdev,
      ',"percentiles_us":[', table.concat(points, ","), "]",
      "}\n")
end
