-- Registers group ARGV[2] of the topic, owned by broker instance ARGV[3] ('' for a named
-- group, shared by every broker). A new named group takes over what the topic retained, in
-- publish order. Returns {taken over, ready}.
local g, owner = ARGV[2], ARGV[3]
if group_exists(g) then return {0, ready_of(g)} end
local taken = register(g, owner)
return {taken, taken}
