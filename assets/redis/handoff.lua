-- Hand a player who just left this server to the server of the zone it walked into: the
-- destination gets the player's lease, for the short time the client needs to reconnect
-- there, and a fresh resume token to reconnect with, in one step.
-- KEYS[1] = <prefix>:session:{<id>}    KEYS[2] = <prefix>:released:{<id>}
-- KEYS[3] = <prefix>:resume:{<id>}     KEYS[4] = <prefix>:handoff:{<id>}
-- ARGV[1] = this server's lease owner   ARGV[2] = the destination's lease owner
-- ARGV[3] = how long the destination holds the lease until the client resumes there, ms
-- ARGV[4] = digest of the token the client is given   ARGV[5] = lifetime of the token set, ms
-- ARGV[6] = most tokens kept
-- The player's final save released the lease and left the release marker '<owner> <seq>'
-- (save.lua): the handoff goes ahead only while the lease is still free and that marker is
-- still this server's, so nobody held or wrote the player in between and the record the
-- destination loads is the one this server saved last (the sequence fence holds).
-- Returns 1: handed over (or already, by an earlier copy of this call); 0: the player was
-- held or released by another server since (nothing changed: the client logs in again).
local holder = redis.call('GET', KEYS[1])
if holder then
  if holder == ARGV[2] and redis.call('GET', KEYS[4]) == ARGV[2] .. ' ' .. ARGV[4] then
    return 1
  end
  return 0
end
local marker = redis.call('GET', KEYS[2])
if not marker or string.sub(marker, 1, #ARGV[1] + 1) ~= ARGV[1] .. ' ' then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('SET', KEYS[4], ARGV[2] .. ' ' .. ARGV[4], 'PX', ARGV[3])
store_token(KEYS[3], ARGV[4], ARGV[5], ARGV[6])
return 1
