-- Discards the ready deliveries of every group of the topic (never handed out, or given back)
-- and what the topic retains; delayed and held deliveries stay. Returns {deliveries, retained}.
local deliveries = 0
for _, g in ipairs(redis.call('HKEYS', GROUPS)) do
  deliveries = deliveries + purge_ready(g)
end
local retained = redis.call('XLEN', RETAINED)
redis.call('DEL', RETAINED)
if deliveries + retained > 0 then touched() end
return {deliveries, retained}
