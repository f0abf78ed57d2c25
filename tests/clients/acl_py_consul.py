"""py-consul 1.5.1's ACL API against a real agent (it sends ?token=):
policy and token create/read/list/clone/delete, and KV under the token.

usage: acl_py_consul.py HOST PORT MANAGEMENT_SECRET
"""
import sys

import consul

host, port, root = sys.argv[1], int(sys.argv[2]), sys.argv[3]
c = consul.Consul(host=host, port=port, token=root)

policy = c.acl.policy.create(
    "py-app", rules={"key_prefix": {"py/": {"policy": "write"}}}, description="from py-consul"
)
assert policy["Name"] == "py-app", policy
assert c.acl.policy.read(policy["ID"])["Description"] == "from py-consul"
assert any(p["Name"] == "py-app" for p in c.acl.policy.list())

tok = c.acl.token.create(policies_id=[policy["ID"]], description="py token")
assert tok["Policies"][0]["Name"] == "py-app", tok
read = c.acl.token.read(tok["AccessorID"])
assert read["Description"] == "py token", read
assert any(t["AccessorID"] == tok["AccessorID"] for t in c.acl.token.list())
clone = c.acl.token.clone(tok["AccessorID"], description="copy")
assert clone["Description"] == "copy" and clone["SecretID"] != tok["SecretID"], clone

user = consul.Consul(host=host, port=port, token=tok["SecretID"])
assert user.kv.put("py/x", "1") is True
try:
    user.kv.put("other/x", "1")
    raise SystemExit("write outside py/ was allowed")
except consul.ACLPermissionDenied:
    pass
anon = consul.Consul(host=host, port=port)
try:
    anon.kv.get("py/x")
    raise SystemExit("anonymous read was allowed")
except consul.ACLPermissionDenied:
    pass

assert c.acl.token.delete(clone["AccessorID"]) is True
assert c.acl.token.delete(tok["AccessorID"]) is True
try:
    user.kv.put("py/y", "1")
    raise SystemExit("a deleted token still works")
except consul.ACLPermissionDenied:
    pass
# py-consul 1.5.1 has no policy delete: its HTTP layer, as it calls it.
from consul.callback import CB

assert c.http.delete(CB.bool(), f"/v1/acl/policy/{policy['ID']}", params=[("token", root)])
assert not any(p["Name"] == "py-app" for p in c.acl.policy.list())
print("all checks passed")
