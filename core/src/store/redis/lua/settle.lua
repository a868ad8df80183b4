-- Deletes the deliveries of group ARGV[2] still held by ARGV[3] at the attempt quoted: pairs
-- (entry, attempt) from ARGV[4] on. One that was lost (its lease ran out and another holder took
-- it) is theirs now and stays. Returns how many were deleted.
local g, holder = ARGV[2], ARGV[3]
local done = 0
local drained = {}
for i = 4, #ARGV - 1, 2 do
  local member, attempt = ARGV[i], ARGV[i + 1]
  if redis.call('HGET', holders(g), member) == holder .. ' ' .. attempt then
    local p, id = split_member(member)
    local key = stream(g, p)
    redis.call('XACK', key, CG, id)
    redis.call('XDEL', key, id)
    forget(g, member)
    drained[p] = true
    done = done + 1
  end
end
for p in pairs(drained) do drop_if_drained(g, p) end
-- No word to the other brokers: a settle makes no work for anyone (no delivery becomes ready,
-- none leaves the ready count that a full queue's publishers wait on), and a broker that learnt
-- the settled lease's end only looks once more when it passes.
return done
