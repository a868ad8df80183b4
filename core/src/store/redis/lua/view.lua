-- The store view of the topic, read without writing anything: {messages retained, then five
-- values per group of the registry: group id, owning broker instance ('' for a named group),
-- ready, delayed (requeued with a delay, not yet promoted, due or not), in flight (handed out
-- under a lease, a lease that ran out included until a claim takes it back; entries given back
-- in place hold lease 0 and are counted ready)}.
local out = {redis.call('XLEN', RETAINED)}
local registry = redis.call('HGETALL', GROUPS)
for i = 1, #registry, 2 do
  local g = registry[i]
  local n = #out
  out[n + 1], out[n + 2], out[n + 3] = g, registry[i + 1], ready_of(g)
  out[n + 4] = redis.call('ZCARD', delayed(g))
  out[n + 5] = redis.call('ZCOUNT', leases(g), '(0', '+inf')
end
return out
