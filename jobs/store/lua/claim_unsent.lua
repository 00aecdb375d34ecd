-- Quota slots self-heal: a slot whose job finished, or whose job never got created (the API died
-- between reserving and creating), is dropped here.
--
--
--
--
--
--
--
--
--
--
--
--
--
--
--
-- The outbox: hand out entries older than the cutoff, each leased (re-scored to now) so that two
-- sweepers never send the same job at once and a sweeper that dies leaves it for the next sweep.
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], 'XX', ARGV[2], id) end
return ids
