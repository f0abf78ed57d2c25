"""Drive tribune's sessions, locks and events with the real python-consul client.

Usage: session_python_consul.py HOST PORT NODE. Exits non-zero (assertion) on
any mismatch.
"""
import sys
import threading
import time

import consul

host, port, node = sys.argv[1], int(sys.argv[2]), sys.argv[3]
c = consul.Consul(host=host, port=port)

# create with defaults: this node, serfHealth, release, lock-delay 15s
sid = c.session.create(name="py-session")
index, s = c.session.info(sid)
assert s["ID"] == sid and s["Name"] == "py-session", s
assert s["Node"] == node and s["Behavior"] == "release", s
assert s["NodeChecks"] == ["serfHealth"] and s["LockDelay"] == 15 * 10**9, s
assert int(index) >= 1
_, sessions = c.session.list()
assert [x["ID"] for x in sessions] == [sid], sessions
_, mine = c.session.node(node)
assert [x["ID"] for x in mine] == [sid], mine
_, missing = c.session.info("no-such-session")
assert missing is None

# acquire / re-acquire / contention / release
sid2 = c.session.create(lock_delay=0)
assert c.kv.put("py/lock", "leader-1", acquire=sid) is True
_, e = c.kv.get("py/lock")
assert e["Session"] == sid and e["LockIndex"] == 1 and e["Value"] == b"leader-1", e
assert c.kv.put("py/lock", "leader-1b", acquire=sid) is True
_, e = c.kv.get("py/lock")
assert e["LockIndex"] == 1 and e["Value"] == b"leader-1b", e
assert c.kv.put("py/lock", "usurper", acquire=sid2) is False
assert c.kv.put("py/lock", "x", release=sid2) is False
assert c.kv.put("py/lock", "released", release=sid) is True
_, e = c.kv.get("py/lock")
assert e.get("Session") is None and e["LockIndex"] == 1, e
assert c.kv.put("py/lock", "leader-2", acquire=sid2) is True
_, e = c.kv.get("py/lock")
assert e["Session"] == sid2 and e["LockIndex"] == 2, e

# invalidation releases the lock; the 15s default lock-delay holds off others
assert c.kv.put("py/delayed", "mine", acquire=sid) is True
assert c.session.destroy(sid) is True
_, e = c.kv.get("py/delayed")
assert e.get("Session") is None and e["Value"] == b"mine", e
assert c.kv.put("py/delayed", "too-soon", acquire=sid2) is False
assert c.session.info(sid)[1] is None

# behavior delete: the key goes with the session
eph = c.session.create(behavior="delete", lock_delay=0)
assert c.kv.put("py/ephemeral", "here", acquire=eph) is True
c.session.destroy(eph)
assert c.kv.get("py/ephemeral")[1] is None

# renew: returns the session; unknown -> NotFound
ttl_sid = c.session.create(ttl=10, lock_delay=0)
renewed = c.session.renew(ttl_sid)
assert renewed["ID"] == ttl_sid and renewed["TTL"] == "10s", renewed
try:
    c.session.renew("no-such-session")
    raise AssertionError("renewing an unknown session succeeded")
except consul.NotFound:
    pass

# TTL expiry: a blocking info wakes when the session lapses (never before
# its TTL), and its lock is released
assert c.kv.put("py/ttl", "v", acquire=ttl_sid) is True
index, _ = c.session.info(ttl_sid)
t0 = time.time()
deadline = t0 + 45
gone = False
while time.time() < deadline:
    index, s = c.session.info(ttl_sid, index=index, wait="10s")
    if s is None:
        gone = True
        break
took = time.time() - t0
assert gone, "TTL session never expired"
assert took >= 9.5, "expired before its TTL: %.1fs" % took
_, e = c.kv.get("py/ttl")
assert e.get("Session") is None, e

# events
ev = c.event.fire("py-deploy", "v2")
assert ev["Name"] == "py-deploy" and ev["ID"], ev
index, events = c.event.list(name="py-deploy")
assert [x["ID"] for x in events] == [ev["ID"]], events
result = {}


def waiter():
    # No wait=: python-consul 1.1 builds that parameter wrongly for events;
    # the agent's default wait (5m) is cut short by the next event anyway.
    result["r"] = c.event.list(name="py-deploy", index=index)


t = threading.Thread(target=waiter)
t.start()
time.sleep(0.3)
assert t.is_alive(), "blocking event list returned before a new event"
ev2 = c.event.fire("py-deploy", "v3")
t.join(10)
assert not t.is_alive(), "blocking event list did not wake"
idx2, events = result["r"]
assert idx2 != index and events[-1]["ID"] == ev2["ID"], result
print("python-consul sessions: all checks passed")
