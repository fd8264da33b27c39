-- Register this process under its instance id, keep the registration alive, or give it up.
-- KEYS[1] = <prefix>:instance:{<instance id>}
-- ARGV[1] = 'hold', 'take' or 'release'
-- ARGV[2] = this process's registration (JSON naming its lease owner, host, pid, address,
--           start time; unique per process start)
-- ARGV[3] = TTL in milliseconds (hold)
-- hold:    registers when nobody is registered (at start, or again after an outage longer
--          than the TTL), extends the registration when it is ours. Returns {1}, or
--          {0, registration, PTTL} when another running process holds the instance id.
-- take:    registers in place of the registration ARGV[4] exactly (a process found dead: its
--          liveness key gone), so a crashed process's replacement need not wait out the TTL.
--          Returns {1}, or as hold when the registration is another one by now.
-- release: deletes the registration only if it is ours. Returns {1} or {0}.
local current = redis.call('GET', KEYS[1])
if ARGV[1] == 'take' and current == ARGV[4] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return {1}
end
if ARGV[1] == 'release' then
  if current == ARGV[2] then
    redis.call('DEL', KEYS[1])
    return {1}
  end
  return {0}
end
if current and current ~= ARGV[2] then
  return {0, current, redis.call('PTTL', KEYS[1])}
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return {1}
