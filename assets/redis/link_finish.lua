-- A linked save across Redis Cluster slots, step 3 of 3 (or a load's recovery), for the
-- players of one slot: apply or drop their pending records of link ARGV[1] once its decision
-- ARGV[2] is known ('committed' or 'aborted', from <prefix>:link:{<link id>}).
-- For each player i: KEYS[2i-1] = <prefix>:player:{<id>}   KEYS[2i] = <prefix>:pending:{<id>}
-- A pending record of this link is written as the record when committed and newer than the
-- stored one (the sequence fence: a later save of the player already holds the change), and
-- deleted either way. A pending record of another link is left alone. Safe to repeat.
-- Returns the number of pending records resolved.

local function older(a, b)
  return #a < #b or (#a == #b and a < b)
end

local function stored_seq(record_key)
  local prefix = redis.call('GETRANGE', record_key, '0', '63')
  return string.match(prefix, '^{"version":%d*,"seq":0*(%d+)') or '0'
end

local link, decision = ARGV[1], ARGV[2]
local resolved = 0
for i = 1, #KEYS / 2 do
  local record_key, pending_key = KEYS[2 * i - 1], KEYS[2 * i]
  if redis.call('HGET', pending_key, 'link') == link then
    if decision == 'committed' then
      local seq = redis.call('HGET', pending_key, 'seq')
      if older(stored_seq(record_key), seq) then
        redis.call('SET', record_key, redis.call('HGET', pending_key, 'record'))
      end
    end
    redis.call('DEL', pending_key)
    resolved = resolved + 1
  end
end
return resolved
