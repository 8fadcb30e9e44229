#!/usr/bin/env python3
"""Open many connections at once to exhaust a gateway's file descriptors.

Usage: flood.py TARGET --conns N [--hold SECONDS]

TARGET: a UNIX socket path or `tcp:HOST:PORT` (as produce.py takes it).

Each connection that connects writes one line {"flood":k}. All are held open for
--hold seconds, then closed. Connects that fail or time out are counted, not fatal.
Last stdout line: {"connected":[k, ...],"failed":n}
"""
import argparse
import json
import sys
import time

from produce import connect


def main():
    p = argparse.ArgumentParser()
    p.add_argument("target")
    p.add_argument("--conns", type=int, default=100)
    p.add_argument("--hold", type=float, default=1.0)
    args = p.parse_args()

    socks, connected, failed = [], [], 0
    for k in range(args.conns):
        s = None
        try:
            s = connect(args.target, timeout=5)
            s.sendall(b'{"flood":%d}\n' % k)
        except OSError:
            failed += 1
            if s is not None:
                s.close()
            continue
        socks.append(s)
        connected.append(k)
    time.sleep(args.hold)
    for s in socks:
        s.close()
    print(json.dumps({"connected": connected, "failed": failed}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
