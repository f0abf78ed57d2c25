"""Drive tribune's KV API with the real python-consul client.

Usage: kv_python_consul.py HOST PORT. Exits non-zero (assertion) on any mismatch.
"""
import re
import sys
import threading
import time

import consul

host, port = sys.argv[1], int(sys.argv[2])
c = consul.Consul(host=host, port=port)

# put / get
assert c.kv.put("py/a", "1") is True
assert c.kv.put("py/b", b"2", flags=7) is True
assert c.kv.put("py/sub/c", "3") is True
index, item = c.kv.get("py/a")
assert item["Key"] == "py/a" and item["Value"] == b"1", item
assert int(index) >= 1
_, item = c.kv.get("py/b")
assert item["Flags"] == 7, item

# missing key -> None, with an index
index, item = c.kv.get("py/missing")
assert item is None and int(index) >= 1

# recurse
_, items = c.kv.get("py/", recurse=True)
assert [i["Key"] for i in items] == ["py/a", "py/b", "py/sub/c"], items

# keys + separator
_, keys = c.kv.get("py/", keys=True, separator="/")
assert keys == ["py/a", "py/b", "py/sub/"], keys

# cas
_, item = c.kv.get("py/a")
assert c.kv.put("py/a", "x", cas=item["ModifyIndex"] + 100) is False
assert c.kv.put("py/a", "x", cas=item["ModifyIndex"]) is True
assert c.kv.put("py/new", "n", cas=0) is True
assert c.kv.put("py/new", "n", cas=0) is False

# delete, recursive delete
assert c.kv.delete("py/b") is True
assert c.kv.get("py/b")[1] is None
assert c.kv.delete("py/sub/", recurse=True) is True
_, items = c.kv.get("py/", recurse=True)
assert [i["Key"] for i in items] == ["py/a", "py/new"], items

# index-blocking get that wakes on a put
index, item = c.kv.get("py/a")
result = {}


def waiter():
    t0 = time.time()
    idx, it = c.kv.get("py/a", index=index, wait="30s")
    result.update(idx=idx, value=it["Value"], took=time.time() - t0)


t = threading.Thread(target=waiter)
t.start()
time.sleep(0.3)
assert t.is_alive(), "blocking get returned before the change"
c.kv.put("py/a", "woken")
t.join(10)
assert not t.is_alive(), "blocking get did not wake"
assert result["value"] == b"woken" and int(result["idx"]) > int(index), result
assert result["took"] < 5, result

# blocking timeout returns the same index
idx2, _ = c.kv.get("py/a", index=result["idx"], wait="1s")
assert idx2 == result["idx"]

# txn through python-consul
r = c.txn.put([
    {"KV": {"Verb": "set", "Key": "py/t", "Value": "dA=="}},
    {"KV": {"Verb": "get", "Key": "py/t"}},
])
assert r["Errors"] is None and r["Results"][1]["KV"]["Value"] == "dA==", r

# status and agent/self
# -dev picks a free server RPC port
assert re.fullmatch(r"127\.0\.0\.1:[1-9][0-9]*", c.status.leader()), c.status.leader()
me = c.agent.self()
assert me["Config"]["Datacenter"] == "dc1"
print("python-consul: all checks passed")
