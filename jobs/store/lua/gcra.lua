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
-- GCRA: ``rate`` requests per ``period`` with bursts up to ``burst``; returns {allowed, retry_after_ms}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local tolerance = interval * (tonumber(ARGV[2]) - 1)
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
if now < tat - tolerance then return {0, tat - tolerance - now} end
local new_tat = tat + interval
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil(new_tat - now) + 1000)
return {1, 0}
