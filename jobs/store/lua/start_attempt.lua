local st = redis.call('HGET', KEYS[1], 'status')
if not st then return {'missing', ''} end
if TERMINAL[st] then return {'finished', st} end
if redis.call('HGET', KEYS[1], 'cancel_requested') == '1' then return {'cancel', st} end
local attempts = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0')
if attempts >= tonumber(ARGV[3]) then return {'exhausted', tostring(attempts)} end
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
-- progress never goes back: at least where loading starts (ARGV[7]), or where an earlier attempt got
local progress = math.max(tonumber(redis.call('HGET', KEYS[1], 'progress') or '0') or 0, tonumber(ARGV[7]))
redis.call('HSET', KEYS[1], 'status', STATUS.running, 'stage', 'loading', 'progress', tostring(progress), 'updated_at', ARGV[2],
           'model_name', ARGV[4], 'random_weights', ARGV[5], 'worker', ARGV[6])
if not redis.call('HGET', KEYS[1], 'started_at') then redis.call('HSET', KEYS[1], 'started_at', ARGV[2]) end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
return {'started', tostring(attempts + 1)}
