-- Extend a session lease only if this server still owns it.
-- KEYS[1] = <prefix>:session:{<id>}
-- ARGV[1] = owner   ARGV[2] = lease TTL in milliseconds
-- Returns 1 when extended, 0 when the lease is gone or owned by someone else (untouched).
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
