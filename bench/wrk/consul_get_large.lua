-- wrk script: tribune/Consul KV GET (default consistency) of 10,000 keys drawn at random
-- from the 1,000,000 that `tribune-bench load` writes (large/pNNNN/kNNNN).
math.randomseed(42)
local paths = {}
for i = 1, 10000 do
  paths[i] = string.format('/v1/kv/large/p%04d/k%04d', math.random(0, 999), math.random(0, 999))
end
local n = 0
request = function()
  n = n % 10000 + 1
  return wrk.format('GET', paths[n])
end
