local st = redis.call('HGET', KEYS[1], 'status')
if not st then return {'missing', ''} end
local allowed = false
for s in string.gmatch(ARGV[3], '[^,]+') do if s == st then allowed = true end end
if not allowed then return {'refused', st} end
local to = ARGV[2]
local switched = false
-- A deletion stub (the job was deleted while it ran): whatever ends it, its ending is the deletion.
local deleted = redis.call('HGET', KEYS[1], 'owner') == 'deleted'
if (ARGV[6] == '1' or (deleted and TERMINAL[to])) and redis.call('HGET', KEYS[1], 'cancel_requested') == '1' then
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
  if deleted then
    -- The worker has stopped: nothing of a deleted job stays (it was kept for the retention period).
    redis.call('DEL', KEYS[1], KEYS[4])
  else
    redis.call('EXPIRE', KEYS[1], ARGV[5])
    if redis.call('EXISTS', KEYS[4]) == 1 then redis.call('EXPIRE', KEYS[4], ARGV[5]) end
  end
end
return {'ok', to}
