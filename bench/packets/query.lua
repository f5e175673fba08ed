-- wrk script for bench/packets.sh: issue 17's two tracker-packet queries, the
-- same distributions as bench/src/bin/colltime.rs (packets) and as
-- bench/packets/last_hour.pgbench and latest.pgbench. The shape is wrk's
-- argument after "--":
--   last_hour  a 1x1 degree box (south-west corner lat in [43, 50), lon in
--              [-4, 7), steps of 0.01) and received_at in [hour - 1 h, hour),
--              newest first, 100 hits;
--   latest     the newest packet of each sender in such a box over
--              [hour - 24 h, hour) ("collapse": "sender"), newest first, 100;
-- where hour = 2026-12-01T00:00:00Z minus a random whole number of hours in
-- [0, 24 * 29).
math.randomseed(42)
local t_end = 1796083200 -- 2026-12-01T00:00:00Z, the generator's end
local window, collapse = 3600, ""

init = function(args)
  local shape = args[1] or "last_hour"
  if shape == "latest" then
    window, collapse = 86400, ',"collapse":"sender"'
  elseif shape ~= "last_hour" then
    error("unknown shape " .. shape .. ": last_hour or latest")
  end
end

request = function()
  local south = (4300 + math.random(0, 699)) / 100
  local west = (-400 + math.random(0, 1099)) / 100
  local hour = t_end - 3600 * math.random(0, 24 * 29 - 1)
  local body = string.format(
    '{"filter":{"and":[{"bbox":{"position":{"west":%.2f,"south":%.2f,"east":%.2f,"north":%.2f}}},' ..
    '{"range":{"received_at":{"gte":%d,"lt":%d}}}]},"sort":["received_at:desc"],"limit":100%s}',
    west, south, west + 1, south + 1, hour - window, hour, collapse)
  return wrk.format("POST", "/collections/packets/query", {["Content-Type"] = "application/json"}, body)
end
