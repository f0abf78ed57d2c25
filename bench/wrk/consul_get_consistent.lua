-- wrk script: Consul-compatible KV GET with ?consistent (the leader confirms with a quorum;
-- a follower asks it for its index by read index) over the 1000 keys of consul_put.lua
-- (/work/shared/bench).
local n = 0
request = function()
  n = (n + 1) % 1000
  return wrk.format('GET', string.format('/v1/kv/bench/key%05d?consistent', n))
end
