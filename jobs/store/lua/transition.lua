local st = redis.call('HGET', KEYS[1], 'status')
if not st then return {'missing', ''} end
local allowed = false
for s in string.gmatch(ARGV[3], '[^,]+') do if s == st then allowed = true end end
if not allowed then return {'refused', st} end
local to = ARGV[2]
local switched = false
if ARGV[6] == '1' and redis.call('HGET', KEYS[1], 'cancel_requested') == '1' then
  to = STATUS.canceled; switched = true
end
redis.call('HSET', KEYS[1], 'status', to, 'updated_at', ARGV[4])
if not switched then
  for i = 7, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
if to ~= STATUS.queued then redis.call('ZREM', KEYS[2], ARGV[1]) end
if to ~= STATUS.running then redis.call('ZREM', KEYS[5], ARGV[1]) end
if TERMINAL[to] then
  redis.call('HSET', KEYS[1], 'finished_at', ARGV[4])
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('EXPIRE', KEYS[1], ARGV[5])
  if redis.call('EXISTS', KEYS[4]) == 1 then redis.call('EXPIRE', KEYS[4], ARGV[5]) end
end
return {'ok', to}
