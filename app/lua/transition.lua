-- Move a session record to a new state, only from the states allowed.
-- KEYS[1]  the session hash
-- ARGV[1]  the new state
-- ARGV[2]  the allowed current states, comma separated
-- ARGV[3]  seconds to keep the record from now on (0: no expiry)
-- ARGV[4…] field, value pairs to set with the state
-- Returns {1, previous state} when it moved, {0, current state} when not.
local current = redis.call('HGET', KEYS[1], 'state')
if not current then
  return {0, ''}
end
local allowed = false
for state in string.gmatch(ARGV[2], '[^,]+') do
  if state == current then
    allowed = true
  end
end
if not allowed then
  return {0, current}
end
redis.call('HSET', KEYS[1], 'state', ARGV[1])
for i = 4, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
local keep = tonumber(ARGV[3])
if keep > 0 then
  redis.call('EXPIRE', KEYS[1], math.ceil(keep))
end
return {1, current}
