-- {ready deliveries of every group of the topic, messages the topic retains}.
local queued = 0
for _, g in ipairs(redis.call('HKEYS', GROUPS)) do queued = queued + ready_of(g) end
return {queued, redis.call('XLEN', RETAINED)}
