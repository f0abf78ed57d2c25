"""Prepared queries through python-consul's `query` API against a real agent.

Usage: query_python_consul.py HOST PORT. The agent has service `web` on
n-a (passing, primary), n-b (critical, secondary), n-c (warning, primary+canary).
"""
import sys

import consul

c = consul.Consul(host=sys.argv[1], port=int(sys.argv[2]))


def nodes(result):
    return sorted(n["Node"]["Node"] for n in result["Nodes"])


q = c.query.create("web", name="web-query", ttl="7s")
qid = q["ID"]
assert len(qid) == 36, q
r = c.query.execute(qid)
assert r["Service"] == "web", r
assert nodes(r) == ["n-a", "n-c"], r
assert r["Datacenter"] == "dc1" and r["Failovers"] == 0, r
assert r["DNS"]["TTL"] == "7s", r
# By name, and with a limit.
assert nodes(c.query.execute("web-query")) == ["n-a", "n-c"]
assert len(c.query.execute("web-query", limit=1)["Nodes"]) == 1

p = c.query.create("web", name="web-passing", onlypassing=True)
assert nodes(c.query.execute(p["ID"])) == ["n-a"]
t = c.query.create("web", name="web-primary", tags=["primary", "!canary"])
assert nodes(c.query.execute("web-primary")) == ["n-a"]

got = c.query.get(qid)
assert got[0]["Name"] == "web-query" and got[0]["Service"]["Service"] == "web", got
assert got[0]["DNS"]["TTL"] == "7s", got
names = sorted(x["Name"] for x in c.query.list())
assert names == ["web-passing", "web-primary", "web-query"], names
ex = c.query.explain("web-query")
assert ex["Query"]["ID"] == qid, ex

assert c.query.delete(t["ID"])
names = sorted(x["Name"] for x in c.query.list())
assert names == ["web-passing", "web-query"], names
# (A deleted query's execute is 404 "Query not found", as Consul's, which
# python-consul's callback does not turn into an exception; the Rust side
# checks it.)
print("all checks passed")
