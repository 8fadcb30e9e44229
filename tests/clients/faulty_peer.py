#!/usr/bin/env python3
"""A faulty peer for ringway's unix_socket_client sink (tests/client_peer_faults.rs).

Usage:
  faulty_peer.py SOCKET --drop
      Accepts each connection and closes it at once.
  faulty_peer.py SOCKET --half-close OUT
      One connection at a time: shuts down its writing side right after accept (the client
      reads EOF), then appends everything it reads to OUT until the client's EOF, and closes.
  faulty_peer.py SOCKET --reset-first OUT
      The first connection: waits until the client has written something, reads none of it,
      waits HOLD_MS (500) more and closes it (unread bytes: the client's read fails with
      ECONNRESET). Later connections: appends everything read to OUT until EOF, and closes.

Stdout (one JSON object per line, flushed at once):
  {"listening": path}
  {"accepted": n, "t": monotonic_seconds}     on each accept (n counts from 1)
  {"eof": n, "bytes": b}                      connection n ended with the client's EOF
  {"accepts": n}                              last, on SIGTERM/SIGINT
"""
import json
import os
import signal
import socket
import sys
import time

HOLD_MS = 500


def say(obj):
    # os.write, not print: the signal handler may run while the main code is writing.
    os.write(1, (json.dumps(obj) + "\n").encode())


def read_to(c, out, n):
    total = 0
    with open(out, "ab") as f:
        while True:
            chunk = c.recv(1 << 16)
            if not chunk:
                break
            f.write(chunk)
            f.flush()
            total += len(chunk)
    say({"eof": n, "bytes": total})


def main():
    path, mode = sys.argv[1], sys.argv[2]
    out = sys.argv[3] if len(sys.argv) > 3 else None
    accepts = 0

    def stop(*_):
        say({"accepts": accepts})
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(64)
    say({"listening": path})
    while True:
        c, _ = s.accept()
        accepts += 1
        say({"accepted": accepts, "t": time.monotonic()})
        if mode == "--drop":
            c.close()
        elif mode == "--half-close":
            c.shutdown(socket.SHUT_WR)
            read_to(c, out, accepts)
            c.close()
        elif mode == "--reset-first" and accepts == 1:
            c.recv(1, socket.MSG_PEEK)  # blocks until the client has written
            time.sleep(HOLD_MS / 1000)
            c.close()
        elif mode == "--reset-first":
            read_to(c, out, accepts)
            c.close()
        else:
            sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
