#!/usr/bin/env python3
"""COMPRESS=DEFLATE (RFC 4978) with Python's zlib as the independent DEFLATE implementation.

  session: log in, COMPRESS DEFLATE, then SELECT, FETCH every message's UID and size,
           APPEND a message (synchronizing literal), see it arrive, refuse a second
           COMPRESS with [COMPRESSIONACTIVE], expunge what it appended, LOGOUT; prints JSON.
  bomb:    log in, COMPRESS DEFLATE, send a deflate bomb (--bomb-mib MiB of one byte in
           about a thousandth of that), and read until the server closes; prints JSON with
           the last line the server sent (its BYE).
"""
import argparse
import json
import re
import socket
import sys
import zlib


class Conn:
    def __init__(self, server):
        host, port = server.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        self.buf = b""
        self.zout = None
        self.zin = None

    def send(self, data):
        if self.zout:
            data = self.zout.compress(data) + self.zout.flush(zlib.Z_SYNC_FLUSH)
        self.sock.sendall(data)

    def fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError
        self.buf += self.zin.decompress(chunk) if self.zin else chunk

    def line(self):
        while b"\r\n" not in self.buf:
            self.fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def command(self, tag, text):
        """Send a command; return (untagged lines, tagged line)."""
        self.send(f"{tag} {text}\r\n".encode())
        untagged = []
        while True:
            line = self.line()
            if line.startswith(tag.encode() + b" "):
                return untagged, line.decode()
            untagged.append(line)

    def start_deflate(self):
        # Nothing compressed may be in flight before the OK (RFC 4978 §3).
        self.zout = zlib.compressobj(wbits=-15)
        self.zin = zlib.decompressobj(wbits=-15)
        self.buf = self.zin.decompress(self.buf) if self.buf else b""


def login(a):
    c = Conn(a.server)
    greeting = c.line()
    assert greeting.startswith(b"* OK"), greeting
    _, done = c.command("l", f'LOGIN "{a.user}" "{a.password}"')
    assert done.startswith("l OK"), done
    assert "COMPRESS=DEFLATE" in done, f"not offered after login: {done}"
    _, done = c.command("z", "COMPRESS DEFLATE")
    assert done.startswith("z OK"), done
    c.start_deflate()
    return c


def session(a):
    c = login(a)
    untagged, done = c.command("s", "SELECT INBOX")
    assert done.startswith("s OK"), done
    exists = next(int(l.split()[1]) for l in untagged if l.endswith(b" EXISTS"))
    untagged, done = c.command("f", "FETCH 1:* (UID RFC822.SIZE)")
    assert done.startswith("f OK"), done
    fetched = [l for l in untagged if b" FETCH (" in l]
    msg = b"From: z@example.org\r\nSubject: over deflate\r\n\r\n" + b"compressed body line\r\n" * 200
    c.send(f"a APPEND INBOX {{{len(msg)}}}\r\n".encode())
    cont = c.line()
    assert cont.startswith(b"+"), cont
    c.send(msg + b"\r\n")
    while True:
        line = c.line().decode()
        if line.startswith("a "):
            break
    assert line.startswith("a OK") and "APPENDUID" in line, line
    uid = int(re.search(r"APPENDUID \d+ (\d+)", line).group(1))
    untagged, done = c.command("g", f"UID FETCH {uid} (BODY.PEEK[TEXT])")
    assert done.startswith("g OK"), done
    body_ok = any(b"compressed body line" in l for l in untagged) or b"compressed body line" in c.buf
    # Leave the mailbox as it was.
    _, done = c.command("d", f"UID STORE {uid} +FLAGS.SILENT (\\Deleted)")
    assert done.startswith("d OK"), done
    _, done = c.command("e", f"UID EXPUNGE {uid}")
    assert done.startswith("e OK"), done
    _, again = c.command("y", "COMPRESS DEFLATE")
    _, bye = c.command("o", "LOGOUT")
    print(json.dumps({
        "exists": exists,
        "fetched": len(fetched),
        "appended_uid": uid,
        "body_ok": body_ok,
        "second_compress": again,
        "logout": bye,
    }))


def bomb(a):
    c = login(a)
    z = zlib.compressobj(level=9, wbits=-15)
    sent = 0
    chunk = b"a" * (1 << 20)
    last = ""
    closed = False
    try:
        for _ in range(a.bomb_mib):
            data = z.compress(chunk)
            if data:
                c.sock.sendall(data)
                sent += len(data)
        data = z.flush(zlib.Z_SYNC_FLUSH)
        c.sock.sendall(data)
        sent += len(data)
    except (BrokenPipeError, ConnectionResetError):
        closed = True
    try:
        while True:
            last = c.line().decode(errors="replace")
    except (EOFError, ConnectionResetError):
        closed = True
    print(json.dumps({"sent_bytes": sent, "last_line": last, "closed": closed}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("command", choices=["session", "bomb"])
    ap.add_argument("--server", required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--bomb-mib", type=int, default=256)
    a = ap.parse_args()
    session(a) if a.command == "session" else bomb(a)


if __name__ == "__main__":
    sys.exit(main())
