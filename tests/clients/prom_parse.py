"""Parse Prometheus text exposition with the real prometheus_client parser.

Usage: prom_parse.py URL. Prints one JSON object: family name -> {"type",
"samples": [[sample name, labels, value], ...]}. Any parse error exits non-zero.
"""
import json
import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

with urllib.request.urlopen(sys.argv[1], timeout=10) as r:
    assert r.status == 200, r.status
    ctype = r.headers.get("Content-Type", "")
    assert ctype.startswith("text/plain"), ctype
    text = r.read().decode("utf-8")

out = {}
for fam in text_string_to_metric_families(text):
    out[fam.name] = {
        "type": fam.type,
        "samples": [[s.name, s.labels, s.value] for s in fam.samples],
    }
print(json.dumps(out))
