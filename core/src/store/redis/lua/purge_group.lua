-- Discards the ready deliveries of group ARGV[2] (never handed out, or given back), as purge.lua
-- does for every group; delayed and held deliveries, the other groups and what the topic
-- retains stay, and so does the group. A missing group is not registered. Returns how many.
local g = ARGV[2]
if not group_exists(g) then return 0 end
local n = purge_ready(g)
if n > 0 then touched() end
return n
