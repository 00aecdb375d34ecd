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
--
--
--
--
--
--
-- Claim an Idempotency-Key, or return the earlier claim. A claim whose job record never appeared
-- (the API process died between claiming and creating) is taken over once it is older than any
-- submission can take, so the client's retry is not refused for the key's whole TTL.
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
-- Running jobs whose lock is gone: their worker died without recording an outcome (a lost node, or
-- Redis down when the job ended), and Redis would redeliver the message only after the visibility
-- timeout (hours). Scores are when a job started or was last seen alive; one older than the lock TTL
-- is checked: alive -> checked again a TTL later; orphan -> returned once and dropped from the index
-- (its next start adds it back).
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local orphans = {}
for _, id in ipairs(ids) do
  if redis.call('HGET', ARGV[4] .. id, 'status') ~= STATUS.running then
    redis.call('ZREM', KEYS[1], id)
  elseif redis.call('EXISTS', ARGV[5] .. id) == 1 then
    redis.call('ZADD', KEYS[1], ARGV[2], id)
  else
    redis.call('ZREM', KEYS[1], id)
    table.insert(orphans, id)
  end
end
return orphans
