-- Import a record (hearth admin import): write it only if it is newer than the stored one,
-- unless told to overwrite.
-- KEYS[1] = <prefix>:player:{<id>}
-- ARGV[1] = the record (JSON, starting {"version":V,"seq":S,...})   ARGV[2] = its sequence
-- ARGV[3] = '1' to write even over a newer or equal stored sequence
-- Returns {1, stored sequence before} when written, {0, stored sequence} when refused.
-- The stored sequence is read as save.lua reads it (digits after "seq":, '0' when absent).
local prefix = redis.call('GETRANGE', KEYS[1], '0', '63')
local stored = string.match(prefix, '^{"version":%d*,"seq":0*(%d+)') or '0'
local function older(a, b)
  return #a < #b or (#a == #b and a < b)
end
if ARGV[3] ~= '1' and not older(stored, ARGV[2]) then
  return {0, stored}
end
redis.call('SET', KEYS[1], ARGV[1])
return {1, stored}
