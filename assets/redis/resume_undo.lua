-- Undo a resume the client was told failed (`unavailable`: no reply in time, or the connection
-- broke after sending), whether or not Redis has run it yet: a late run must not spend the
-- client's token and hold its lease unseen.
-- KEYS[1] = <prefix>:resume:{<id>}             the player's token set
-- KEYS[2] = <prefix>:session:{<id>}            the player's session lease
-- KEYS[3] = <prefix>:resume:{<id>}:cancelled   fresh digests of resumes given up on
-- ARGV[1] = digest of the token the resume presented   ARGV[2] = digest of the fresh token it
-- would store   ARGV[3] = this server's lease owner   ARGV[4] = the resume's lease, ms
-- ARGV[5] = lifetime of the token set, ms   ARGV[6] = how long the cancellation is kept, ms
-- The fresh digest is unique to the resume, so it names it. Marking it cancelled first makes
-- a copy that runs later answer 3 and change nothing; if the resume already ran (the fresh
-- token is stored), its effect is reversed: the fresh token deleted, the presented one
-- stored again, and the lease it took released if it is still that short resume lease of
-- this server (a join that claimed it since holds it for the full lease TTL, and is left be).
-- Returns 1: the resume had run and is undone; 0: it had not run, and now never will.
redis.call('SADD', KEYS[3], ARGV[2])
redis.call('PEXPIRE', KEYS[3], ARGV[6])
if redis.call('HEXISTS', KEYS[1], ARGV[2]) == 0 then
  return 0
end
redis.call('HDEL', KEYS[1], ARGV[2])
local n = redis.call('HINCRBY', KEYS[1], '#', 1)
redis.call('HSET', KEYS[1], ARGV[1], n)
redis.call('PEXPIRE', KEYS[1], ARGV[5])
if redis.call('GET', KEYS[2]) == ARGV[3] then
  local left = redis.call('PTTL', KEYS[2])
  if left >= 0 and left <= tonumber(ARGV[4]) then
    redis.call('DEL', KEYS[2])
  end
end
return 1
