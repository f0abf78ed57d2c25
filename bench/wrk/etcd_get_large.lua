-- wrk script: etcd v3 JSON gateway range (linearizable) of 10,000 keys drawn at random
-- from the 1,000,000 that `tribune-bench load` writes (large/pNNNN/kNNNN).
local b='ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'
local function b64(data)
  return ((data:gsub('.', function(x)
    local r, byte = '', x:byte()
    for i = 8, 1, -1 do r = r .. (byte % 2^i - byte % 2^(i-1) > 0 and '1' or '0') end
    return r
  end) .. '0000'):gsub('%d%d%d?%d?%d?%d?', function(x)
    if #x < 6 then return '' end
    local c = 0
    for i = 1, 6 do c = c + (x:sub(i,i) == '1' and 2^(6-i) or 0) end
    return b:sub(c+1, c+1)
  end) .. ({ '', '==', '=' })[#data % 3 + 1])
end
math.randomseed(42)
local bodies = {}
for i = 1, 10000 do
  local k = string.format('large/p%04d/k%04d', math.random(0, 999), math.random(0, 999))
  bodies[i] = '{"key":"' .. b64(k) .. '"}'
end
local n = 0
request = function()
  n = n % 10000 + 1
  return wrk.format('POST', '/v3/kv/range', {['Content-Type'] = 'application/json'}, bodies[n])
end
