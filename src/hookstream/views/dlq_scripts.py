"""The DLQ index's Lua scripts (views/dlq_index.py): each one call per batch, atomic.

They build key names from the prefix as `RedisKeys` does (dlq_letter, dlq_set,
dlq_messages), so they run on one Redis node.
"""

from __future__ import annotations

# Moves a letter between states' sets (from or to may be nil).
PLACE = """
local function place(p, id, key, from, to)
  local f = redis.call('HMGET', key, 'h:tenant', 'h:endpoint_id', 'h:event_type')
  for _, suffix in ipairs({'', ':tenant:' .. f[1], ':endpoint:' .. f[2], ':type:' .. f[3]}) do
    if from then redis.call('ZREM', p .. 'dlq:' .. from .. suffix, id) end
    if to then redis.call('ZADD', p .. 'dlq:' .. to .. suffix, 0, id) end
  end
end
"""

# ARGV: prefix, then per letter: id, n, n field/value pairs. Returns how many were new.
ADD = (
    PLACE
    + """
local p, added, i = ARGV[1], 0, 2
while i <= #ARGV do
  local id, n = ARGV[i], tonumber(ARGV[i + 1])
  local key = p .. 'dlq:letter:' .. id
  if redis.call('HEXISTS', key, 'body') == 0 then
    added = added + 1
    local fields = {}
    for j = i + 2, i + 1 + 2 * n do fields[#fields + 1] = ARGV[j] end
    redis.call('HSET', key, unpack(fields))
    redis.call('PERSIST', key)
    local state = 'open'
    if redis.call('HEXISTS', key, 'redriven_at') == 1 then state = 'redriven' end
    place(p, id, key, nil, state)
    local msg = redis.call('HGET', key, 'h:message_id')
    local newest = redis.call('HGET', p .. 'dlq:messages', msg)
    if not newest or newest < id then redis.call('HSET', p .. 'dlq:messages', msg, id) end
  end
  i = i + 2 + 2 * n
end
return added
"""
)

# ARGV: prefix, then per redrive: id, redriven_at, task_id, ttl_ms (for a letter
# not indexed yet: its redrive is kept that long, as long as the letter lives).
MARK = (
    PLACE
    + """
local p = ARGV[1]
for i = 2, #ARGV, 4 do
  local id = ARGV[i]
  local key = p .. 'dlq:letter:' .. id
  local was = redis.call('HEXISTS', key, 'redriven_at')
  redis.call('HSET', key, 'redriven_at', ARGV[i + 1], 'task_id', ARGV[i + 2])
  if redis.call('HEXISTS', key, 'body') == 1 then
    if was == 0 then place(p, id, key, 'open', 'redriven') end
  else
    redis.call('PEXPIRE', key, ARGV[i + 3])
  end
end
return 0
"""
)

# ARGV: prefix, redriven_at, task_id, force (1: also letters already redriven), ids.
# Returns the ids claimed; each open one is claimed by one caller only.
CLAIM = (
    PLACE
    + """
local p, at, task, force, claimed = ARGV[1], ARGV[2], ARGV[3], ARGV[4] == '1', {}
for i = 5, #ARGV do
  local id = ARGV[i]
  local key = p .. 'dlq:letter:' .. id
  if redis.call('HEXISTS', key, 'body') == 1 then
    local was = redis.call('HEXISTS', key, 'redriven_at')
    if was == 0 or force then
      redis.call('HSET', key, 'redriven_at', at, 'task_id', task)
      if was == 0 then place(p, id, key, 'open', 'redriven') end
      claimed[#claimed + 1] = id
    end
  end
end
return claimed
"""
)

# ARGV: prefix, ids: claims whose send failed go back to open.
RELEASE = (
    PLACE
    + """
local p = ARGV[1]
for i = 2, #ARGV do
  local key = p .. 'dlq:letter:' .. ARGV[i]
  if redis.call('HDEL', key, 'redriven_at', 'task_id') > 0 then
    place(p, ARGV[i], key, 'redriven', 'open')
  end
end
return 0
"""
)

# ARGV: prefix, cutoff (13 digits), limit: forgets letters dead before the cutoff.
PRUNE = (
    PLACE
    + """
local p, cutoff, limit, pruned = ARGV[1], ARGV[2], tonumber(ARGV[3]), 0
for _, state in ipairs({'open', 'redriven'}) do
  local ids = redis.call('ZRANGEBYLEX', p .. 'dlq:' .. state, '-', '(' .. cutoff, 'LIMIT', 0, limit)
  for _, id in ipairs(ids) do
    local key = p .. 'dlq:letter:' .. id
    place(p, id, key, state, nil)
    local msg = redis.call('HGET', key, 'h:message_id')
    if msg and redis.call('HGET', p .. 'dlq:messages', msg) == id then
      redis.call('HDEL', p .. 'dlq:messages', msg)
    end
    redis.call('DEL', key)
    pruned = pruned + 1
  end
end
return pruned
"""
)

# ARGV: prefix, n, n field/value pairs (`h:tenant`, `acme`), then ids: the ids whose
# letters have every one of those values.
FILTER = """
local p, n, matched = ARGV[1], tonumber(ARGV[2]), {}
local names, wanted = {}, {}
for j = 1, n do
  names[j], wanted[j] = ARGV[1 + 2 * j], ARGV[2 + 2 * j]
end
for i = 3 + 2 * n, #ARGV do
  local got = redis.call('HMGET', p .. 'dlq:letter:' .. ARGV[i], unpack(names))
  local ok = true
  for j = 1, n do
    if got[j] ~= wanted[j] then ok = false; break end
  end
  if ok then matched[#matched + 1] = ARGV[i] end
end
return matched
"""
