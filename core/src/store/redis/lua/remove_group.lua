-- Removes group ARGV[2] with every delivery of it (handed out ones too); returns how many were
-- waiting (ready or delayed).
local g = ARGV[2]
if not group_exists(g) then return 0 end
local waiting = ready_of(g) + redis.call('ZCARD', delayed(g))
for _, p in ipairs(redis.call('ZRANGE', prios(g), 0, -1)) do
  redis.call('DEL', stream(g, p))
end
redis.call('DEL', prios(g), leases(g), holders(g), delayed(g), delayed_msgs(g))
redis.call('HDEL', GROUPS, g)
redis.call('HDEL', READY, g)
touched()
return waiting
