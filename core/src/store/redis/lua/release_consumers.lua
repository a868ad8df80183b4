-- Removes the Redis consumers ARGV[3..] (a closing broker's holders) from every stream of group
-- ARGV[2] where they hold nothing any more, so that consumer lists do not grow with every
-- broker that ever ran. Returns how many were removed.
local g = ARGV[2]
if not group_exists(g) then return 0 end
local removed = 0
for _, p in ipairs(redis.call('ZRANGE', prios(g), 0, -1)) do
  local key = stream(g, p)
  for i = 3, #ARGV do
    if #redis.call('XPENDING', key, CG, '-', '+', 1, ARGV[i]) == 0 then
      redis.call('XGROUP', 'DELCONSUMER', key, CG, ARGV[i])
      removed = removed + 1
    end
  end
end
return removed
