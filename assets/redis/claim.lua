-- Claim a player's session lease and load the record, in one round trip.
-- KEYS[1] = <prefix>:session:{<id>}   KEYS[2] = <prefix>:player:{<id>}
-- ARGV[1] = owner (the claiming process's lease owner)   ARGV[2] = lease TTL in milliseconds
-- ARGV[3] = a lease owner found not alive (its liveness key gone), or '': a lease still held
--           by exactly that owner is taken over
-- Returns {1, record or nil} when the lease is ours (new, taken over from a dead holder, or
--         re-claimed and extended), {0, current owner} when another server holds it.
-- Every read comes before the write: a command Redis refuses (a key of the wrong type) fails
-- the script before the lease is touched, so a failed claim never leaves a lease held.
local current = redis.call('GET', KEYS[1])
if current and current ~= ARGV[1] and current ~= ARGV[3] then
  return {0, current}
end
local record = redis.call('GET', KEYS[2])
if current == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
else
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return {1, record}
