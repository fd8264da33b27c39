-- Give up a session lease only if this server owns it.
-- KEYS[1] = <prefix>:session:{<id>}
-- ARGV[1] = owner
-- Returns 1 when deleted, 0 when it was not ours (untouched).
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
