-- wrk script: tribune/Consul KV GET ?recurse of one 1,000-key prefix (large/pNNNN/),
-- cycling over the 1,000 prefixes that `tribune-bench load` writes.
local n = 0
request = function()
  n = (n + 1) % 1000
  return wrk.format('GET', string.format('/v1/kv/large/p%04d/?recurse', n))
end
