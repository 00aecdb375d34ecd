-- Add an inversion-cache key to a job's list of the entries it used (never to a deleted job).
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local raw = redis.call('HGET', KEYS[1], ARGV[1])
local keys = {}
if raw then keys = cjson.decode(raw) end
for _, k in ipairs(keys) do if k == ARGV[2] then return 0 end end
table.insert(keys, ARGV[2])
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(keys))
return 1
