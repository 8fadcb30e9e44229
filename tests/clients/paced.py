#!/usr/bin/env python3
"""Write produce.py's events at a steady rate, so that a test can act in the middle of a stream.

Usage: paced.py SOCKET|HOST:PORT --conn C --count N --rate R
Sends events 0..N of connection C (produce.py's format) in blocks of 500, at about R events/s.
Prints {"sent": n, "error": e} at the end (sent = lines whose every byte was accepted by the
kernel: exact even when a write fails partway through a block).
"""
import argparse
import json
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from produce import event  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("socket")
    p.add_argument("--conn", type=int, required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--rate", type=float, required=True)
    args = p.parse_args()
    if "/" not in args.socket and ":" in args.socket:
        host, port = args.socket.rsplit(":", 1)
        s = socket.create_connection((host, int(port)))
    else:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(args.socket)
    start = time.monotonic()
    sent, error = 0, None
    try:
        while sent < args.count:
            n = min(500, args.count - sent)
            block = b"".join(event(args.conn, i, 60, 140) for i in range(sent, sent + n))
            off = 0
            try:
                while off < len(block):
                    off += s.send(block[off:])
            finally:
                sent += block.count(b"\n", 0, off)
            ahead = start + sent / args.rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
    except OSError as e:
        error = type(e).__name__
    s.close()
    print(json.dumps({"sent": sent, "error": error}), flush=True)
    return 0 if error is None else 1


if __name__ == "__main__":
    sys.exit(main())
