#!/usr/bin/env python3
"""Many concurrent connections, written round-robin in random chunks.

Usage: many.py TARGET --conns N --count M [--seed S] [--first-conn C]

TARGET: a UNIX socket path or `tcp:HOST:PORT` (as produce.py takes it).

Connection k (ids C..C+N-1) sends events 0..M-1 of produce.py's format. All connections
are open at once and written a random-sized chunk at a time in turn, so the gateway
sees data pending on every one of them. Last stdout line: {"conns":N,"sent":N*M}
"""
import argparse
import json
import random
import sys

from produce import connect, event


def main():
    p = argparse.ArgumentParser()
    p.add_argument("target")
    p.add_argument("--conns", type=int, default=300)
    p.add_argument("--count", type=int, default=200)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--first-conn", type=int, default=0)
    args = p.parse_args()
    rng = random.Random(args.seed)

    conns = []
    for k in range(args.conns):
        c = args.first_conn + k
        s = connect(args.target)
        data = b"".join(event(c, i, 60, 140) for i in range(args.count))
        conns.append([s, memoryview(data), 0])
    live = list(conns)
    while live:
        for entry in list(live):
            s, data, pos = entry
            n = min(rng.randint(1, 2048), len(data) - pos)
            s.sendall(data[pos:pos + n])
            entry[2] = pos + n
            if entry[2] == len(data):
                s.close()
                live.remove(entry)
    print(json.dumps({"conns": args.conns, "sent": args.conns * args.count}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
