-- Write a player's record only if this server owns the lease AND the record is newer.
-- KEYS[1] = <prefix>:player:{<id>}   KEYS[2] = <prefix>:session:{<id>}
-- ARGV[1] = owner   ARGV[2] = save sequence of this record   ARGV[3] = the record (JSON)
-- ARGV[4] = '1' to release the lease afterwards (logout, shutdown), '0' otherwise
-- Returns 'saved', 'lost' (lease not ours: nothing written, lease untouched) or
-- 'stale' (stored sequence >= ours: nothing written; the lease is still released if asked).
--
-- The stored sequence is read from the start of the stored string, which every record of
-- version >= 2 begins with: {"version":N,"seq":S,... A record without it (v1, foreign data)
-- counts as sequence 0. Same rule as stored_seq() in src/store/memory.rs.
-- Only the first 128 bytes are read (GETRANGE): Redis hashes every byte of every string that
-- enters Lua, so loading the whole stored record would cost as much again as the new one.
-- 128 bytes hold the prefix with any u32 version and u64 sequence.
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return 'lost'
end
local stored_seq = 0
local stored = redis.call('GETRANGE', KEYS[1], 0, 127)
if stored ~= '' then
  local digits = string.match(stored, '^{"version":%d*,"seq":(%d+)')
  if digits then
    stored_seq = tonumber(digits)
  end
end
local result = 'stale'
if stored_seq < tonumber(ARGV[2]) then
  redis.call('SET', KEYS[1], ARGV[3])
  result = 'saved'
end
if ARGV[4] == '1' then
  redis.call('DEL', KEYS[2])
end
return result
