#!/usr/bin/env python3
"""Clients of a gateway with a `reply` sink: each sends its own events and reads them back.

Usage:
  reply_client.py TARGET --clients N --count M [--first C]
      N connections (threads), each sends M events of its own (produce.py's format, connection
      id C+k) in random-sized writes while reading what comes back. Prints one JSON line:
      {"ok": n_ok, "errors": [...], "seconds": [per-client completion times], "wall": total}
      A client is ok when it got back exactly its M events, in order, and nothing else.
  reply_client.py TARGET --never-read --first C
      One connection that writes events forever and never reads: prints {"sent_bytes": b,
      "closed": true, "error": "..."} once the gateway closes it (or the write fails).

  reply_client.py TARGET --read-some K --count M --first C
      One connection that sends M events (then half-closes) while reading only the first K
      replies; once the gateway has closed it for not reading (the sending fails or ends), it
      reads what its socket still holds and prints {"lines": complete replies received}.

TARGET is a UNIX socket path or tcp:HOST:PORT.
"""
import argparse
import json
import random
import socket
import sys
import threading
import time

sys.path.insert(0, __import__("os").path.dirname(__file__))
from produce import event  # noqa: E402


def connect(target):
    if target.startswith("tcp:"):
        host, port = target[4:].rsplit(":", 1)
        s = socket.create_connection((host, int(port)))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(target)
    return s


def one_client(target, c, count, seed, results, idx):
    start = time.monotonic()
    try:
        s = connect(target)
        expected = [event(c, i, 60, 140) for i in range(count)]
        data = b"".join(expected)
        got = bytearray()
        want = len(data)

        def reader():
            while len(got) < want:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got.extend(chunk)

        t = threading.Thread(target=reader)
        t.start()
        rng = random.Random(seed)
        pos = 0
        while pos < len(data):
            n = min(rng.randint(1, 8192), len(data) - pos)
            s.sendall(data[pos:pos + n])
            pos += n
        t.join(timeout=120)
        s.close()
        if bytes(got) != data:
            lines = bytes(got).split(b"\n")
            results[idx] = ("error", f"client {c}: got {len(got)} bytes / {len(lines) - 1} lines back, "
                            f"expected {want} bytes / {count} lines, first diff at byte "
                            f"{next((i for i, (a, b) in enumerate(zip(got, data)) if a != b), min(len(got), want))}")
            return
        results[idx] = ("ok", time.monotonic() - start)
    except Exception as e:  # noqa: BLE001 - reported to the test
        results[idx] = ("error", f"client {c}: {type(e).__name__}: {e}")


def never_read(target, c):
    s = connect(target)
    sent = 0
    i = 0
    error = None
    try:
        while True:
            block = b"".join(event(c, j, 500, 900) for j in range(i, i + 100))
            s.sendall(block)
            sent += len(block)
            i += 100
    except OSError as e:
        error = type(e).__name__
    print(json.dumps({"sent_bytes": sent, "closed": True, "error": error}), flush=True)


def read_some(target, c, count, k):
    s = connect(target)
    done = threading.Event()

    def writer():
        try:
            for j in range(0, count, 100):
                s.sendall(b"".join(event(c, i, 60, 140) for i in range(j, min(j + 100, count))))
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        done.set()

    t = threading.Thread(target=writer)
    t.start()
    got = bytearray()
    while got.count(b"\n") < k:
        chunk = s.recv(4096)
        if not chunk:
            break
        got.extend(chunk)
    # Stop reading until the gateway gives up on us (write_timeout) and the writer ends.
    done.wait(120)
    t.join()
    time.sleep(0.5)
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        got.extend(chunk)
    lines = bytes(got).split(b"\n")[:-1]  # a cut last reply is not a reply
    want = [event(c, i, 60, 140).rstrip(b"\n") for i in range(len(lines))]
    print(json.dumps({"lines": len(lines), "in_order": lines == want}), flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("target")
    p.add_argument("--clients", type=int, default=1)
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--first", type=int, default=0)
    p.add_argument("--never-read", action="store_true")
    p.add_argument("--read-some", type=int)
    args = p.parse_args()
    if args.read_some is not None:
        read_some(args.target, args.first, args.count, args.read_some)
        return 0
    if args.never_read:
        never_read(args.target, args.first)
        return 0
    results = [None] * args.clients
    wall = time.monotonic()
    threads = [threading.Thread(target=one_client,
                                args=(args.target, args.first + k, args.count, k + 1, results, k))
               for k in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - wall
    ok = [r[1] for r in results if r and r[0] == "ok"]
    errors = [r[1] for r in results if not r or r[0] != "ok"]
    print(json.dumps({"ok": len(ok), "errors": errors, "seconds": ok, "wall": wall}), flush=True)
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main())
