#!/usr/bin/env python3
"""The NDJSON load of benches/ingest.sh and benches/forward.sh: log-like lines of ~186 bytes.

Usage: load.py PATH LINES (seeded: the same file every time).
"""
import json
import random
import sys

r = random.Random(1)
with open(sys.argv[1], "w") as f:
    for i in range(int(sys.argv[2])):
        f.write(json.dumps({"ts": 1700000000 + i, "level": r.choice(["info", "warn", "error"]),
            "svc": "api-%d" % r.randint(1, 50),
            "msg": "request handled path=/v1/items/%d status=%d" % (i, r.choice([200, 201, 404, 500])),
            "dur_ms": r.random() * 100, "trace": "%032x" % r.getrandbits(128)}) + "\n")
