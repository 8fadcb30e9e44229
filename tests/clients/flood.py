#!/usr/bin/env python3
"""Open many connections at once to exhaust a gateway's file descriptors.

Usage: flood.py SOCKET --conns N [--hold SECONDS]

Each connection that connects writes one line {"flood":k}. All are held open for
--hold seconds, then closed. Connects that fail or time out are counted, not fatal.
Last stdout line: {"connected":[k, ...],"failed":n}
"""
import argparse
import json
import socket
import sys
import time


def main():
    p = argparse.ArgumentParser()
    p.add_argument("socket")
    p.add_argument("--conns", type=int, default=100)
    p.add_argument("--hold", type=float, default=1.0)
    args = p.parse_args()

    socks, connected, failed = [], [], 0
    for k in range(args.conns):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        try:
            s.connect(args.socket)
            s.sendall(b'{"flood":%d}\n' % k)
        except OSError:
            failed += 1
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
