-- The resume tokens of one player: take a presented token (if any), store a fresh one.
-- KEYS[1] = <prefix>:resume:{<id>}   hash: token digest -> issue number; field '#' counts issues
-- KEYS[2] = <prefix>:session:{<id>}  the player's session lease (same hash tag, same slot)
-- ARGV[1] = digest of the presented token, or '' to only store (after a password login)
-- ARGV[2] = digest of the fresh token
-- ARGV[3] = lifetime of the set, ms (every store extends it)
-- ARGV[4] = most tokens kept (the oldest go first)
-- ARGV[5] = a lease owner found not alive (its liveness key gone), or '': a lease held by
--           exactly that owner does not keep the player online (the claim takes it over)
-- ARGV[6] = this server's lease owner   ARGV[7] = the lease it is granted, ms (until the join
--           that follows claims it for the full lease TTL)
-- KEYS[3] = <prefix>:resume:{<id>}:cancelled   set: fresh digests of resumes given up on
--           (resume_undo.lua): a late copy of such a resume changes nothing
-- A presented token is spent only together with the lease, in this one step: a resume racing
-- another login of the player (here or on another server) either wins the lease or keeps its
-- token, never loses both.
-- Returns 1: the fresh token is stored (the presented one deleted); 0: the presented token is
-- unknown (never issued, used, expired, revoked): nothing changed; {2, owner}: it is known
-- but the player holds a lease (online, on that owner): nothing changed, it stays usable;
-- 3: this resume was given up on (answered `unavailable`) before it ran: nothing changed.
if redis.call('SISMEMBER', KEYS[3], ARGV[2]) == 1 then
  return 3
end
if ARGV[1] ~= '' then
  if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
    return 0
  end
  local holder = redis.call('GET', KEYS[2])
  if holder and holder ~= ARGV[5] then
    return {2, holder}
  end
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('SET', KEYS[2], ARGV[6], 'PX', ARGV[7])
end
local n = redis.call('HINCRBY', KEYS[1], '#', 1)
redis.call('HSET', KEYS[1], ARGV[2], n)
local all = redis.call('HGETALL', KEYS[1])
local tokens = {}
for i = 1, #all, 2 do
  if all[i] ~= '#' then
    table.insert(tokens, {all[i], tonumber(all[i + 1])})
  end
end
local max = tonumber(ARGV[4])
if #tokens > max then
  table.sort(tokens, function(a, b) return a[2] < b[2] end)
  for i = 1, #tokens - max do
    redis.call('HDEL', KEYS[1], tokens[i][1])
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
