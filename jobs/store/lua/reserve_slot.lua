-- Quota slots self-heal: a slot whose job finished, or whose job never got created (the API died
-- between reserving and creating), is dropped here.
local now = tonumber(ARGV[3])
local members = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 1, #members, 2 do
  local st = redis.call('HGET', ARGV[4] .. members[i], 'status')
  if (not st and tonumber(members[i + 1]) < now - tonumber(ARGV[5]))
     or TERMINAL[st] then
    redis.call('ZREM', KEYS[1], members[i])
  end
end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now, ARGV[1])
return 1
