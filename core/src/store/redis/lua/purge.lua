-- Discards the ready deliveries of every group of the topic (never handed out, or given back)
-- and what the topic retains; delayed and held deliveries stay. Returns {deliveries, retained}.
local deliveries = 0
for _, g in ipairs(redis.call('HKEYS', GROUPS)) do
  for _, p in ipairs(redis.call('ZRANGE', prios(g), 0, -1)) do
    local key = stream(g, p)
    local last = '0-0'
    local info = redis.call('XINFO', 'GROUPS', key)
    for _, cg in ipairs(info) do
      local f = fields_of(cg)
      if f.name == CG then last = f['last-delivered-id'] end
    end
    local fresh = redis.call('XRANGE', key, '(' .. last, '+')
    for _, e in ipairs(fresh) do redis.call('XDEL', key, e[1]) end
    deliveries = deliveries + #fresh
  end
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', leases(g), 0, 0)) do
    local p, id = split_member(member)
    if p then
      redis.call('XACK', stream(g, p), CG, id)
      redis.call('XDEL', stream(g, p), id)
    end
    forget(g, member)
    deliveries = deliveries + 1
  end
  for _, p in ipairs(redis.call('ZRANGE', prios(g), 0, -1)) do drop_if_drained(g, p) end
  redis.call('HSET', READY, g, 0)
end
local retained = redis.call('XLEN', RETAINED)
redis.call('DEL', RETAINED)
if deliveries + retained > 0 then touched() end
return {deliveries, retained}
