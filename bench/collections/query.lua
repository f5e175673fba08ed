-- wrk script for bench/collections.sh: the verification query of issue 17,
-- a random status and a random 7-day window, newest first, 50 hits; the
-- same distribution as bench/collections/query.pgbench.
math.randomseed(42)
local statuses = {"verified", "pending", "rejected", "expired"}
local t0 = 1735689600 -- 2025-01-01T00:00:00Z

request = function()
  local t1 = t0 + math.random(0, 689) * 86400
  local body = string.format(
    '{"filter":{"and":[{"term":{"status":"%s"}},{"range":{"created_at":{"gte":%d,"lt":%d}}}]},"sort":["created_at:desc"],"limit":50}',
    statuses[math.random(1, 4)], t1, t1 + 7 * 86400)
  return wrk.format("POST", "/collections/checks/query", {["Content-Type"] = "application/json"}, body)
end
