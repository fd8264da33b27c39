-- Write players' records, each only if this server owns its lease AND the record is newer.
-- ARGV[1] = owner   ARGV[2] = lease TTL in milliseconds (for a re-claim, below)
-- ARGV[3] = keys per player: 3 in a call of saves that release, 2 otherwise
-- For each player i (one or many), with k = ARGV[3]:
--   KEYS[k(i-1)+1] = <prefix>:player:{<id>}   KEYS[k(i-1)+2] = <prefix>:session:{<id>}
--   KEYS[k(i-1)+3] = <prefix>:released:{<id>} (releasing calls only): '<owner> <seq>' of the
--                    last save that released the lease (TTL: the lease TTL)
--   ARGV[4i]   = save sequence of this record
--   ARGV[4i+1] = sequence of the newest record this server knows is stored
--   ARGV[4i+2] = the record (JSON)
--   ARGV[4i+3] = '1' to release the lease afterwards (logout, shutdown), '0' otherwise
-- Returns one status per player, in order: 'saved', 'lost' (lease not ours: nothing
-- written, lease untouched), 'stale' (stored sequence >= ours: nothing written; the lease
-- is still released if asked) or 'error: <reason>' (Redis refused a command for this player).
--
-- Re-claim: a lease that expired (during a Redis outage longer than the lease TTL, say) and
-- that nobody has claimed since is ours again if the stored record is still the one this
-- server last stored (its sequence equals ARGV[4i]): then no other server has written the
-- player since, and the save goes on after SET-ting the lease with the full TTL. If the record
-- moved on, another server had the player meanwhile: 'lost'; unless the release marker says
-- this server's own release wrote the stored record (a save-and-release that timed out and
-- that Redis ran late: its retry must not mistake that write for another server's).
-- Another server that had the player since either holds the lease or left its own marker.
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

-- The stored record's sequence, as digits ('0' when there is none).
local function stored_seq(record_key)
  local prefix = redis.call('GETRANGE', record_key, '0', '63')
  return string.match(prefix, '^{"version":%d*,"seq":0*(%d+)') or '0'
end

-- One player's save; returns its status. Raises if Redis refuses a command (a key of the
-- wrong type, out of memory).
local function save(owner, ttl, record_key, lease_key, marker_key, seq, last_stored, record, release)
  local lease = redis.call('GET', lease_key)
  local stored = nil
  if not lease then
    stored = stored_seq(record_key)
    if stored == last_stored
      or (marker_key and redis.call('GET', marker_key) == owner .. ' ' .. stored) then
      redis.call('SET', lease_key, owner, 'PX', ttl)
      lease = owner
    end
  end
  if lease ~= owner then
    return 'lost'
  end
  stored = stored or stored_seq(record_key)
  local status = 'stale'
  if older(stored, seq) then
    redis.call('SET', record_key, record)
    status = 'saved'
    stored = seq
  end
  if release == '1' then
    redis.call('DEL', lease_key)
    if marker_key then
      redis.call('SET', marker_key, owner .. ' ' .. stored, 'PX', ttl)
    end
  end
  return status
end

-- Each player in its own pcall: Redis does not undo a script that fails half-way, so one
-- player's error must not fail the players before it (already written) or after it. The
-- failed player gets 'error: <reason>' and is retried.
local owner, ttl, k = ARGV[1], ARGV[2], tonumber(ARGV[3])
local statuses = {}
for i = 1, #KEYS / k do
  local base = k * (i - 1)
  local marker = nil
  if k == 3 then marker = KEYS[base + 3] end
  local ok, status = pcall(save, owner, ttl, KEYS[base + 1], KEYS[base + 2], marker,
    ARGV[4 * i], ARGV[4 * i + 1], ARGV[4 * i + 2], ARGV[4 * i + 3])
  if ok then
    statuses[i] = status
  elseif type(status) == 'table' and status.err then
    statuses[i] = 'error: ' .. status.err
  else
    statuses[i] = 'error: ' .. tostring(status)
  end
end
return statuses
