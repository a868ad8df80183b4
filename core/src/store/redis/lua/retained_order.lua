-- What a named group registered now would hand out first: register() queues the retained
-- messages in publish order, each in the stream of its priority, and a claim takes the highest
-- priority first. So: the first `max` retained messages by priority, highest first, in publish
-- order within one, at attempt 1, as peek's seven values each. The stream is read in chunks
-- (only its priorities kept, at most `max` entries per priority), then the chosen entries.
local function retained_in_claim_order(max)
  local by_prio, prios_seen = {}, {}
  local start = '-'
  while true do
    local chunk = redis.call('XRANGE', RETAINED, start, '+', 'COUNT', 256)
    for _, e in ipairs(chunk) do
      local f = fields_of(e[2])
      local p = tonumber(f.r) or 0
      local list = by_prio[p]
      if not list then
        list = {}
        by_prio[p] = list
        table.insert(prios_seen, p)
      end
      if #list < max then table.insert(list, e[1]) end
    end
    if #chunk < 256 then break end
    start = '(' .. chunk[#chunk][1] -- after the last one read
  end
  table.sort(prios_seen, function(x, y) return x > y end)
  local out, got = {}, 0
  for _, p in ipairs(prios_seen) do
    for _, id in ipairs(by_prio[p]) do
      if got >= max then return out end
      local e = redis.call('XRANGE', RETAINED, id, id)[1]
      if e then
        local f = fields_of(e[2])
        local has_meta = 0
        if f.m then has_meta = 1 end
        local n = #out
        out[n + 1], out[n + 2], out[n + 3], out[n + 4] = 1, f.i, f.p, has_meta
        out[n + 5], out[n + 6], out[n + 7] = f.m or '', p, f.t
        got = got + 1
      end
    end
  end
  return out
end
