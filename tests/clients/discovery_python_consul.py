"""Register services with health checks through python-consul and read them back.

Usage: discovery_python_consul.py HOST PORT HTTP_BACKEND_PORT TCP_BACKEND_PORT
"""
import sys
import time

import consul

host, port, http_port, tcp_port = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
c = consul.Consul(host=host, port=port)

assert c.agent.service.register(
    "web", service_id="web-http", port=int(http_port), tags=["http"],
    check=consul.Check.http(f"http://127.0.0.1:{http_port}/", interval="1s", timeout="1s"))
assert c.agent.service.register(
    "web", service_id="web-tcp", port=int(tcp_port), tags=["tcp"],
    check=consul.Check.tcp("127.0.0.1", int(tcp_port), interval="1s", timeout="1s"))
assert c.agent.service.register("cache", service_id="cache1", port=11211, check=consul.Check.ttl("30s"))

services = c.agent.services()
assert set(services) == {"web-http", "web-tcp", "cache1"}, services
assert services["web-http"]["Service"] == "web"
checks = c.agent.checks()
assert checks["service:web-http"]["Type"] == "http", checks["service:web-http"]
assert checks["service:web-tcp"]["Type"] == "tcp"
assert checks["service:cache1"]["Type"] == "ttl"
assert checks["service:cache1"]["Status"] == "critical"  # TTL checks start critical

# TTL: pass it, then it is passing in the catalog
c.agent.check.ttl_pass("service:cache1", "all good")

deadline = time.time() + 10
while True:
    _, nodes = c.health.service("web", passing=True)
    _, cache = c.health.service("cache", passing=True)
    if len(nodes) == 2 and len(cache) == 1:
        break
    assert time.time() < deadline, (nodes, cache)
    time.sleep(0.1)
assert cache[0]["Checks"][-1]["Output"] == "all good", cache
_, svcs = c.catalog.services()
assert svcs["web"] == ["http", "tcp"] or sorted(svcs["web"]) == ["http", "tcp"], svcs
assert "consul" in svcs
_, entries = c.catalog.service("web", tag="tcp")
assert [e["ServiceID"] for e in entries] == ["web-tcp"], entries
_, node_checks = c.health.node(c.agent.self()["Config"]["NodeName"])
assert any(ch["CheckID"] == "serfHealth" and ch["Status"] == "passing" for ch in node_checks)
_, crit = c.health.state("critical")
assert all(ch["Status"] == "critical" for ch in crit)
print("python-consul discovery: all checks passed")
