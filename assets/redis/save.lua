-- Write players' records, each only if this server owns its lease AND the record is newer.
-- For each player i (one or many):
--   KEYS[2i-1] = <prefix>:player:{<id>}   KEYS[2i] = <prefix>:session:{<id>}
--   ARGV[3i-1] = save sequence of this record   ARGV[3i] = the record (JSON)
--   ARGV[3i+1] = '1' to release the lease afterwards (logout, shutdown), '0' otherwise
-- ARGV[1] = owner
-- Returns one status per player, in order: 'saved', 'lost' (lease not ours: nothing
-- written, lease untouched) or 'stale' (stored sequence >= ours: nothing written; the lease
-- is still released if asked).
--
-- The stored sequence is read from the start of the stored string, which every record of
-- version >= 2 begins with: {"version":N,"seq":S,... A record without it (v1, foreign data)
-- counts as sequence 0. Same rule as stored_seq() in src/store/memory.rs.
-- Only the first 64 bytes are read (GETRANGE): Redis hashes every byte of every string that
-- enters Lua, so loading the whole stored record would cost as much again as the new one.
-- 64 bytes hold the prefix up to the sequence's last digit (48 at most: u32 version, u64 sequence).
--
-- Several players per call because starting a call costs redis-server about as much as the
-- work of one save (see docs/benchmarks.md). The keys then span cluster slots: Redis
-- Cluster, which Hearth does not support yet, would need calls grouped by slot.

-- Whether decimal sequence a is less than b. Compared as digit strings (shorter is smaller,
-- then by digits), which is exact for any u64, unlike Lua's double-precision numbers, and
-- costs no number conversion. Neither has leading zeros: Hearth writes none, and a stored
-- one's are skipped by the pattern below.
local function older(a, b)
  return #a < #b or (#a == #b and a < b)
end

local owner = ARGV[1]
local statuses = {}
for i = 1, #KEYS / 2 do
  local record_key, lease_key = KEYS[2 * i - 1], KEYS[2 * i]
  local seq, record, release = ARGV[3 * i - 1], ARGV[3 * i], ARGV[3 * i + 1]
  if redis.call('GET', lease_key) ~= owner then
    statuses[i] = 'lost'
  else
    local stored_seq = '0'
    local stored = redis.call('GETRANGE', record_key, '0', '63')
    if stored ~= '' then
      stored_seq = string.match(stored, '^{"version":%d*,"seq":0*(%d+)') or '0'
    end
    statuses[i] = 'stale'
    if older(stored_seq, seq) then
      redis.call('SET', record_key, record)
      statuses[i] = 'saved'
    end
    if release == '1' then
      redis.call('DEL', lease_key)
    end
  end
end
return statuses
