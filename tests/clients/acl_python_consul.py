"""python-consul 1.1.0 with tokens (it sends X-Consul-Token): KV under a
token limited to app/, denied outside it and anonymously.

usage: acl_python_consul.py HOST PORT TOKEN
"""
import sys

import consul

host, port, token = sys.argv[1], int(sys.argv[2]), sys.argv[3]
c = consul.Consul(host=host, port=port, token=token)
assert c.kv.put("app/py", "v") is True
index, data = c.kv.get("app/py")
assert data["Value"] == b"v", data
try:
    c.kv.put("other/py", "v")
    raise SystemExit("write outside app/ was allowed")
except consul.ACLPermissionDenied:
    pass
index, keys = c.kv.get("", keys=True)
assert keys and all(k.startswith("app/") for k in keys), keys
anon = consul.Consul(host=host, port=port)
try:
    anon.kv.put("app/anon", "v")
    raise SystemExit("anonymous write was allowed")
except consul.ACLPermissionDenied:
    pass
print("all checks passed")
