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
local existing = redis.call('GET', KEYS[1])
if existing then
  local ok, claim = pcall(cjson.decode, existing)
  if not ok or type(claim) ~= 'table' or redis.call('EXISTS', ARGV[3] .. tostring(claim['job_id'])) == 1
     or tonumber(claim['at'] or ARGV[4]) > tonumber(ARGV[4]) - tonumber(ARGV[5]) then
    return existing
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return false
