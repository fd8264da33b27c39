-- Extend session leases, each only if this server still owns it.
-- KEYS = <prefix>:session:{<id>} of each lease (one or many)
-- ARGV[1] = owner   ARGV[2] = lease TTL in milliseconds
-- Returns one integer per key, in order: 1 when extended, 0 when the lease is gone or owned
-- by someone else (untouched).
--
-- Several leases per call because the call itself costs redis-server more than the two
-- commands per lease (see docs/benchmarks.md). The keys then span cluster slots: Redis
-- Cluster, which Hearth does not support yet, would need calls grouped by slot.
local owner, ttl = ARGV[1], ARGV[2]
local extended = {}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == owner then
    redis.call('PEXPIRE', key, ttl)
    extended[i] = 1
  else
    extended[i] = 0
  end
end
return extended
