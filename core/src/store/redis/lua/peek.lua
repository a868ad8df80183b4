-- Reads, writing nothing, the next ARGV[3] deliveries a claim of group ARGV[2] would hand out,
-- in claim.lua's order: highest priority first; within one, the entries given back in place
-- (in stream order), then the entries never handed out, then the delayed deliveries that are
-- due (a claim promotes them to the back of their priority, in due order). Leased entries are
-- left out, those whose lease ran out too (a claim takes them back, with attempt + 1). A
-- missing group is not registered; it shows what it would take over if registered now: the
-- messages the topic retains (retained_order.lua).
-- Returns seven values per delivery: attempt, id, payload, has metadata, metadata, priority,
-- time.
local g, max = ARGV[2], tonumber(ARGV[3])
if not group_exists(g) then return retained_in_claim_order(max) end
local now = server_now()

local out = {}
local got = 0
local function add(p, attempt, f)
  local has_meta = 0
  if f.m then has_meta = 1 end
  local n = #out
  out[n + 1], out[n + 2], out[n + 3], out[n + 4] = attempt, f.i, f.p, has_meta
  out[n + 5], out[n + 6], out[n + 7] = f.m or '', p, f.t
  got = got + 1
end

-- Given back in place: holder FREE, lease 0.
local back = {}
for _, member in ipairs(redis.call('ZRANGEBYSCORE', leases(g), 0, 0)) do
  local who, attempt = split_holder(redis.call('HGET', holders(g), member))
  local p, id = split_member(member)
  if who == FREE and p then
    back[p] = back[p] or {}
    table.insert(back[p], {id = id, attempt = attempt})
  end
end

-- Due delayed deliveries, by priority, in the order promote_due enqueues them.
local due = {}
for _, k in ipairs(redis.call('ZRANGEBYSCORE', delayed(g), '-inf', now)) do
  local packed = redis.call('HGET', delayed_msgs(g), k)
  if packed then
    local d = cmsgpack.unpack(packed)
    local p = tostring(d[1])
    due[p] = due[p] or {}
    table.insert(due[p], d)
  end
end

-- Every priority with something: the streams in use, and those of the due delayed ones.
local seen, order = {}, {}
for _, p in ipairs(redis.call('ZRANGE', prios(g), 0, -1)) do
  seen[p] = true
  table.insert(order, p)
end
for p in pairs(due) do
  if not seen[p] then table.insert(order, p) end
end
table.sort(order, function(x, y) return tonumber(x) > tonumber(y) end)

-- The last entry the stream's consumer group handed out: what comes after it was never.
local function last_delivered(key)
  local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', key)
  if not ok then return nil end
  for _, info in ipairs(groups) do
    local name, last = nil, nil
    for i = 1, #info, 2 do
      if info[i] == 'name' then name = info[i + 1] end
      if info[i] == 'last-delivered-id' then last = info[i + 1] end
    end
    if name == CG then return last end
  end
  return nil
end

for _, p in ipairs(order) do
  if got >= max then break end
  local key = stream(g, p)
  local mine = back[p]
  if mine then
    table.sort(mine, function(x, y) return id_less(x.id, y.id) end)
    for _, d in ipairs(mine) do
      if got >= max then break end
      local e = redis.call('XRANGE', key, d.id, d.id)[1]
      if e then add(p, d.attempt, fields_of(e[2])) end
    end
  end
  if got < max and seen[p] then
    local last = last_delivered(key) or '0-0'
    -- From the last one handed out (inclusive, so one more; skipped below if present).
    local entries = redis.call('XRANGE', key, last, '+', 'COUNT', max - got + 1)
    for _, e in ipairs(entries) do
      if got >= max then break end
      if e[1] ~= last then
        local f = fields_of(e[2])
        add(p, tonumber(f.a), f)
      end
    end
  end
  local later = due[p]
  if later then
    for _, d in ipairs(later) do
      if got >= max then break end
      local f = {i = d[3], p = d[4], t = d[5]}
      if d[6] == 1 then f.m = d[7] end
      add(p, d[2], f)
    end
  end
end
return out
