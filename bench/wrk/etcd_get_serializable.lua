-- wrk script: etcd v3 JSON gateway range, serializable (answered by the member it reaches
-- from its own state, like tribune's ?stale), over the 1000 keys written by etcd_put.lua
-- (/work/shared/bench). Otherwise the same as etcd_get.lua there.
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
for i = 0, 999 do bodies[i] = '{"key":"' .. b64(string.format('bench/key%05d', i)) .. '","serializable":true}' end
local n = 0
request = function()
  n = (n + 1) % 1000
  return wrk.format('POST', '/v3/kv/range', {['Content-Type'] = 'application/json'}, bodies[n])
end
