-- Write several players' records together: every record or none (a trade, a gift).
-- ARGV[1] = owner   ARGV[2] = lease TTL in milliseconds (for a re-claim, as in save.lua)
-- For each player i:
--   KEYS[2i-1] = <prefix>:player:{<id>}   KEYS[2i] = <prefix>:session:{<id>}
--   ARGV[3i]   = save sequence of this record
--   ARGV[3i+1] = sequence of the newest record this server knows is stored
--   ARGV[3i+2] = the record (JSON)
-- Returns one status per player, in order. Every player passes save.lua's checks (the lease
-- ours, or expired and re-claimable because the stored record is still at ARGV[3i+1]; the
-- stored sequence older than ours): every record is written, all 'saved'. Otherwise nothing
-- is written (no lease touched either): the players that failed get 'lost' or 'stale', the
-- others 'error: saved together with a refused player: nothing written'. Never releases.
--
-- All checks (reads) come before any write: a key of the wrong type fails the script before
-- anything is written, so the call is all or nothing. On a Redis Cluster every key of the
-- call must share one slot; the store sends this script only then.

local function older(a, b)
  return #a < #b or (#a == #b and a < b)
end

local function stored_seq(record_key)
  local prefix = redis.call('GETRANGE', record_key, '0', '63')
  return string.match(prefix, '^{"version":%d*,"seq":0*(%d+)') or '0'
end

local owner, ttl = ARGV[1], ARGV[2]
local players = #KEYS / 2
local statuses, reclaim = {}, {}
local refused = false
for i = 1, players do
  local record_key, lease_key = KEYS[2 * i - 1], KEYS[2 * i]
  local seq, last_stored = ARGV[3 * i], ARGV[3 * i + 1]
  local lease = redis.call('GET', lease_key)
  local stored = stored_seq(record_key)
  if not lease and stored == last_stored then
    reclaim[i] = true
    lease = owner
  end
  if lease ~= owner then
    statuses[i] = 'lost'
    refused = true
  elseif not older(stored, seq) then
    statuses[i] = 'stale'
    refused = true
  end
end
if refused then
  for i = 1, players do
    statuses[i] = statuses[i] or 'error: saved together with a refused player: nothing written'
  end
  return statuses
end
for i = 1, players do
  if reclaim[i] then
    redis.call('SET', KEYS[2 * i], owner, 'PX', ttl)
  end
  redis.call('SET', KEYS[2 * i - 1], ARGV[3 * i + 2])
  statuses[i] = 'saved'
end
return statuses
