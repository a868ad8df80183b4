-- Hands up to ARGV[5] deliveries of group ARGV[2] to holder ARGV[3] for ARGV[4] ms: highest
-- priority first, oldest first within one. A priority's candidates are, in stream order, its
-- entries whose lease ran out or that were given back (XCLAIM from the pending entries list;
-- attempt + 1 unless given back in place), then entries never handed out (XREADGROUP).
-- Delayed deliveries that are due join the back of their priority first. Leases that ran out
-- under holder ARGV[6] (the caller's own ack deadlines) are not taken: its broker is alive and
-- its deadline timer requeues them.
-- Returns {ready after, then nine per delivery: entry, number, attempt, id, payload, has
-- metadata, metadata, priority, time}.
-- A take (ARGV[7] given; max is 1) settles what it hands out in the same script (XACK, XDEL),
-- unless its payload is over ARGV[7] bytes: then it stays where it was, ready, for a take with
-- room for it. A take's reply has one more value after the ready count: that payload's size, or
-- 0.
local g, holder, lease, max = ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local spare = ARGV[6]
local take_limit = tonumber(ARGV[7])
local now = server_now()
-- A group's ready count is there as long as the group is (they are registered and removed
-- together): reading it first is also the usual check that the group exists.
local ready = redis.call('HGET', READY, g)
if not ready then
  if not group_exists(g) then
    -- A named group lives as long as Redis keeps it; one that is missing was lost with the data
    -- (a server restarted without persistence, a flush): its members register it again. An
    -- anonymous one was removed (or collected: its broker was silent too long) and stays so.
    if string.sub(g, 1, 2) ~= 'n:' then return {0} end
    register(g, '')
  end
  ready = redis.call('HGET', READY, g)
end
ready = tonumber(ready or '0')
local promoted = promote_due(g, now)
local wrote = promoted > 0
ready = ready + promoted

local back = {}
for _, member in ipairs(redis.call('ZRANGEBYSCORE', leases(g), '-inf', now)) do
  local who, attempt = split_holder(redis.call('HGET', holders(g), member))
  local p, id = split_member(member)
  if not who or not p then
    forget(g, member)
  elseif who ~= spare then
    back[p] = back[p] or {}
    table.insert(back[p], {id = id, member = member, free = (who == FREE), attempt = attempt})
  end
end

local out = {0}
if take_limit then out[2] = 0 end
local got, taken_ready = 0, 0
local emptied = {} -- priorities whose entries a take deleted
-- `held`: the entry was handed out before (its lease ran out, or it was given back), so it has
-- a holder and a lease to forget; an entry never handed out has neither.
local function hand_out(member, p, f, attempt, key, id, held)
  if take_limit then
    if #f.p > take_limit then
      -- Back in place, ready (whether it was ready or its lease had run out), and the take ends.
      redis.call('XCLAIM', key, CG, FREE, 0, id, 'JUSTID')
      redis.call('HSET', holders(g), member, FREE .. ' ' .. attempt)
      redis.call('ZADD', leases(g), 0, member)
      taken_ready = taken_ready - 1
      out[2] = #f.p
      got = max
      return
    end
    redis.call('XACK', key, CG, id)
    redis.call('XDEL', key, id)
    if held then forget(g, member) end
    emptied[p] = true
  else
    redis.call('HSET', holders(g), member, holder .. ' ' .. attempt)
    redis.call('ZADD', leases(g), now + lease, member)
  end
  local has_meta = 0
  if f.m then has_meta = 1 end
  local n = #out
  out[n + 1], out[n + 2], out[n + 3], out[n + 4], out[n + 5] = member, f.k, attempt, f.i, f.p
  out[n + 6], out[n + 7], out[n + 8], out[n + 9] = has_meta, f.m or '', p, f.t
  got = got + 1
end

for _, p in ipairs(redis.call('ZREVRANGE', prios(g), 0, -1)) do
  if got >= max then break end
  local key = stream(g, p)
  local mine = back[p]
  if mine then
    table.sort(mine, function(x, y) return id_less(x.id, y.id) end)
    for _, d in ipairs(mine) do
      if got >= max then break end
      local claimed = redis.call('XCLAIM', key, CG, holder, 0, d.id)
      local e = claimed[1]
      if not e or not e[2] then
        forget(g, d.member) -- its entry is gone (purged)
        if d.free then taken_ready = taken_ready + 1 end
      else
        local attempt = d.attempt + 1
        if d.free then
          attempt = d.attempt
          taken_ready = taken_ready + 1
        end
        hand_out(d.member, p, fields_of(e[2]), attempt, key, d.id, true)
      end
    end
  end
  if got < max then
    local r = redis.call('XREADGROUP', 'GROUP', CG, holder, 'COUNT', max - got, 'STREAMS', key, '>')
    if r then
      for _, e in ipairs(r[1][2]) do
        local f = fields_of(e[2])
        taken_ready = taken_ready + 1
        hand_out(p .. '/' .. e[1], p, f, tonumber(f.a), key, e[1], false)
      end
    end
  end
end
if taken_ready ~= 0 then ready = redis.call('HINCRBY', READY, g, -taken_ready) end
for p in pairs(emptied) do drop_if_drained(g, p) end
if got > 0 or wrote then touched() end
out[1] = math.max(ready, 0)
return out
