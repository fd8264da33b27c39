-- A linked save across Redis Cluster slots, step 1 of 3, for the players of one slot:
-- write each player's record as a pending record of link ARGV[3], not yet its record.
-- ARGV[1] = owner   ARGV[2] = lease TTL ms   ARGV[3] = link id (<owner>/<n>)
-- For each player i:
--   KEYS[3i-2] = <prefix>:player:{<id>}   KEYS[3i-1] = <prefix>:session:{<id>}
--   KEYS[3i]   = <prefix>:pending:{<id>}
--   ARGV[3i+1] = save sequence   ARGV[3i+2] = last stored sequence   ARGV[3i+3] = the record
-- Every player is checked as save_together.lua checks it (lease ours or re-claimable, stored
-- sequence older), and must have no pending record of another link; then every pending
-- record is written (hash: link, seq, record), all 'prepared'. Otherwise nothing is written:
-- the refused players get 'lost', 'stale' or 'pending:<link id>' (a pending record of another link,
-- which the store resolves first), the others 'error: ...'. All reads come before any write.

local function older(a, b)
  return #a < #b or (#a == #b and a < b)
end

local function stored_seq(record_key)
  local prefix = redis.call('GETRANGE', record_key, '0', '63')
  return string.match(prefix, '^{"version":%d*,"seq":0*(%d+)') or '0'
end

local owner, ttl, link = ARGV[1], ARGV[2], ARGV[3]
local players = #KEYS / 3
local statuses, reclaim = {}, {}
local refused = false
for i = 1, players do
  local record_key, lease_key, pending_key = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  local seq, last_stored = ARGV[3 * i + 1], ARGV[3 * i + 2]
  local lease = redis.call('GET', lease_key)
  local stored = stored_seq(record_key)
  if not lease and stored == last_stored then
    reclaim[i] = true
    lease = owner
  end
  local other = redis.call('HGET', pending_key, 'link')
  if lease ~= owner then
    statuses[i] = 'lost'
    refused = true
  elseif not older(stored, seq) then
    statuses[i] = 'stale'
    refused = true
  elseif other and other ~= link then
    statuses[i] = 'pending:' .. other
    refused = true
  end
end
if refused then
  for i = 1, players do
    statuses[i] = statuses[i] or 'error: prepared together with a refused player: nothing written'
  end
  return statuses
end
for i = 1, players do
  if reclaim[i] then
    redis.call('SET', KEYS[3 * i - 1], owner, 'PX', ttl)
  end
  redis.call('HSET', KEYS[3 * i], 'link', link, 'seq', ARGV[3 * i + 1], 'record', ARGV[3 * i + 3])
  statuses[i] = 'prepared'
end
return statuses
