#!/usr/bin/env python3
"""A peer for ringway's unix_socket_client sink: listens on a UNIX socket and misbehaves.

Usage:
  unix_peer.py SOCKET --drop
      Accepts each connection and closes it at once.
  unix_peer.py SOCKET --half-close OUT
      Accepts connections one at a time; shuts down its writing side at once (the client sees
      EOF) and appends everything it reads to OUT until the client closes.
Prints {"accepts": n} when stopped with SIGTERM (or SIGINT).
"""
import json
import os
import signal
import socket
import sys


def main():
    path, mode = sys.argv[1], sys.argv[2]
    out = sys.argv[3] if len(sys.argv) > 3 else None
    accepts = 0

    def stop(*_):
        print(json.dumps({"accepts": accepts}), flush=True)
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(16)
    print(json.dumps({"listening": path}), flush=True)
    while True:
        c, _ = s.accept()
        accepts += 1
        if mode == "--drop":
            c.close()
            continue
        c.shutdown(socket.SHUT_WR)
        with open(out, "ab") as f:
            while True:
                chunk = c.recv(1 << 16)
                if not chunk:
                    break
                f.write(chunk)
                f.flush()
        c.close()


if __name__ == "__main__":
    main()
