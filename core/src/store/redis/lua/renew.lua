-- Renews the leases of holder ARGV[3] on entries ARGV[5..] of group ARGV[2] to ARGV[4] ms from
-- now: the heartbeat of a live broker. Entries it no longer holds are left alone. Returns how
-- many were renewed.
local g, holder = ARGV[2], ARGV[3]
local until_ms = server_now() + tonumber(ARGV[4])
local mine = holder .. ' '
local renewed = 0
for i = 5, #ARGV do
  local h = redis.call('HGET', holders(g), ARGV[i])
  if h and string.sub(h, 1, #mine) == mine then
    redis.call('ZADD', leases(g), 'XX', until_ms, ARGV[i])
    renewed = renewed + 1
  end
end
return renewed
