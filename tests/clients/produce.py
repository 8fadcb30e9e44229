#!/usr/bin/env python3
"""A real peer for ringway's integration tests: connect to a UNIX or TCP socket and write NDJSON.

Usage:
  produce.py TARGET --conn C --count N [--seed S] [--writes random|tiny|whole]
             [--pad MIN:MAX] [--forever] [--progress] [--as-uid U --as-gid G]
  produce.py TARGET --file PATH [--seed S] [--writes ...]

TARGET is a UNIX socket path (optionally `unix:PATH`) or `tcp:HOST:PORT` (see connect()).

Stdout protocol (one JSON object per line, flushed at once):
  first line   {"pid":..,"uid":..,"gid":..}   the process's own credentials: what the kernel
                                               reports as SO_PEERCRED over UNIX (TCP has none)
  --progress   {"bytes":n}                     bytes handed to the kernel so far (~every 1 MiB)
  last line    {"sent":n,"upper":u,"bytes":b,"error":e}
               sent  = lines whose every byte was accepted by send()
               upper = lines that may have reached the kernel (a send() that fails may
                       have passed part of its chunk on first): the receiver can see at most these

Generated events are `event(c, i)` below; tests/util/mod.rs has the same function, so a
test can check each delivered line byte for byte. Writes are cut at random sizes
(seeded), so lines are split anywhere, including inside UTF-8 sequences.
"""
import argparse
import json
import os
import random
import socket
import sys

ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
# Every 17th event carries a JSON escape, a raw multi-byte character and escaped quotes.
EXTRA = ',"u":"\\u00e9 \u2603 \\"q\\""'


def event(c, i, pad_min, pad_max):
    n = pad_min + (i * 7 + c * 13) % (pad_max - pad_min + 1)
    start = (i * 31 + c) % len(ALPHABET)
    pad = (ALPHABET * (n // len(ALPHABET) + 2))[start:start + n]
    extra = EXTRA if i % 17 == 0 else ""
    return ('{"c":%d,"i":%d,"p":"%s"%s}\n' % (c, i, pad, extra)).encode()


def connect(target, timeout=None):
    """A connected stream socket to TARGET: `tcp:HOST:PORT` (HOST may be `[v6]`; TCP_NODELAY
    is set, so each write goes out as it was cut), else a UNIX socket path, `unix:` optional.
    `timeout` (seconds) bounds the connect and stays set on the socket."""
    if target.startswith("tcp:"):
        host, _, port = target[len("tcp:"):].rpartition(":")
        host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        sock = socket.create_connection((host, int(port)), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    path = target[len("unix:"):] if target.startswith("unix:") else target
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except BaseException:
        sock.close()
        raise
    return sock


def say(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def chunk_size(rng, mode):
    if mode == "tiny":
        return rng.randint(1, 16)
    if mode == "whole":
        return 1 << 20
    # "random": mostly small writes that cut lines anywhere, sometimes large ones.
    if rng.random() < 0.7:
        return rng.randint(1, 300)
    return rng.randint(1, 65536)


class Sender:
    def __init__(self, sock, rng, mode, progress):
        self.sock, self.rng, self.mode, self.progress = sock, rng, mode, progress
        self.bytes = 0
        self.attempted = 0
        self.next_report = 1 << 20

    def send(self, buf):
        """Send all of buf in randomly sized writes; on error, self.bytes says how far it got."""
        view = memoryview(buf)
        pos = 0
        while pos < len(view):
            n = min(chunk_size(self.rng, self.mode), len(view) - pos)
            self.attempted = self.bytes + n
            self.sock.sendall(view[pos:pos + n])
            pos += n
            self.bytes += n
            if self.progress and self.bytes >= self.next_report:
                say({"bytes": self.bytes})
                self.next_report = self.bytes + (1 << 20)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("target")
    p.add_argument("--conn", type=int, default=0)
    p.add_argument("--count", type=int, default=0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--writes", choices=["random", "tiny", "whole"], default="random")
    p.add_argument("--pad", default="60:140")
    p.add_argument("--file")
    p.add_argument("--forever", action="store_true",
                   help="stream until the gateway closes the connection (bounded by --count)")
    p.add_argument("--progress", action="store_true")
    p.add_argument("--as-uid", type=int)
    p.add_argument("--as-gid", type=int)
    args = p.parse_args()
    pad_min, pad_max = (int(x) for x in args.pad.split(":"))

    if args.as_gid is not None:
        os.setgroups([])
        os.setgid(args.as_gid)
    if args.as_uid is not None:
        os.setuid(args.as_uid)
    say({"pid": os.getpid(), "uid": os.getuid(), "gid": os.getgid()})

    rng = random.Random(args.seed)
    sock = connect(args.target)
    sender = Sender(sock, rng, args.writes, args.progress)
    sent, upper, error = 0, 0, None
    try:
        if args.file:
            with open(args.file, "rb") as f:
                data = f.read()
            sender.send(data)
            sent = upper = data.count(b"\n")
        elif args.forever:
            # Blocks of lines; a line counts as sent once all its bytes were accepted.
            i = 0
            while i < args.count:
                block_ends, block = [], bytearray()
                for j in range(i, min(i + 1000, args.count)):
                    block += event(args.conn, j, pad_min, pad_max)
                    block_ends.append(len(block))
                base = sender.bytes
                try:
                    sender.send(block)
                finally:
                    done = sender.bytes - base
                    sent += sum(1 for end in block_ends if end <= done)
                    tried = sender.attempted - base
                    upper += sum(1 for end in block_ends if end <= tried)
                i += len(block_ends)
        else:
            data = b"".join(event(args.conn, i, pad_min, pad_max) for i in range(args.count))
            sender.send(data)
            sent = upper = args.count
    except (BrokenPipeError, ConnectionResetError) as e:
        error = type(e).__name__
        if not args.forever:
            say({"sent": sent, "upper": upper, "bytes": sender.bytes, "error": error})
            return 1
    finally:
        sock.close()
    say({"sent": sent, "upper": upper, "bytes": sender.bytes, "error": error})
    return 0


if __name__ == "__main__":
    sys.exit(main())
