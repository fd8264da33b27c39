-- Shared by resume.lua and handoff.lua (prepended to each when the binary is built).
-- Stores resume token digest `digest` in the player's token set `set` (hash: digest -> issue
-- number; field '#' counts issues), keeps at most `max` tokens (the oldest go first) and
-- sets the set's lifetime to `ttl_ms`.
local function store_token(set, digest, ttl_ms, max)
  local n = redis.call('HINCRBY', set, '#', 1)
  redis.call('HSET', set, digest, n)
  local all = redis.call('HGETALL', set)
  local tokens = {}
  for i = 1, #all, 2 do
    if all[i] ~= '#' then
      table.insert(tokens, {all[i], tonumber(all[i + 1])})
    end
  end
  max = tonumber(max)
  if #tokens > max then
    table.sort(tokens, function(a, b) return a[2] < b[2] end)
    for i = 1, #tokens - max do
      redis.call('HDEL', set, tokens[i][1])
    end
  end
  redis.call('PEXPIRE', set, ttl_ms)
end

