-- wrk script: etcd v3 JSON gateway range with prefix (linearizable) over one 1,000-key
-- prefix (large/pNNNN/), cycling over the 1,000 prefixes `tribune-bench load` writes.
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
local bodies = {}
for i = 0, 999 do
  local p = string.format('large/p%04d/', i)
  -- the range end of a prefix: its last byte plus one ('/' + 1 = '0')
  local e = string.format('large/p%04d0', i)
  bodies[i] = '{"key":"' .. b64(p) .. '","range_end":"' .. b64(e) .. '"}'
end
local n = 0
request = function()
  n = (n + 1) % 1000
  return wrk.format('POST', '/v3/kv/range', {['Content-Type'] = 'application/json'}, bodies[n])
end
