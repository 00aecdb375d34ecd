local st = redis.call('HGET', KEYS[1], 'status')
if not st then return 'missing' end
if st == STATUS.queued then
  redis.call('HSET', KEYS[1], 'status', STATUS.canceled, 'cancel_requested', '1', 'finished_at', ARGV[2],
             'updated_at', ARGV[2])
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  return 'canceled'
end
if st == STATUS.running then
  redis.call('HSET', KEYS[1], 'cancel_requested', '1', 'updated_at', ARGV[2])
  return 'requested'
end
return 'terminal'
