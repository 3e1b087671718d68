#!/usr/bin/env python3
"""Log in through frontd with Python's imaplib/poplib (independent client implementations)
and report what the session saw, as one JSON line.

  imap: login (LOGIN, or AUTHENTICATE PLAIN with --sasl), capabilities before and after,
        SELECT INBOX, the subjects there; {"ok", "error", "caps_pre", "caps_post",
        "exists", "subjects"}.
  pop3: USER/PASS (or AUTH PLAIN, its response on a line of its own, with --sasl), STAT,
        the subjects; {"ok", "error", "count", "subjects"}.
  read: log in over IMAP, the subscribed mailboxes (LSUB), and every message of --mailbox
        whole; {"ok", "subscribed", "exists", "messages"} (exists -1: no such mailbox).
  hold: log in over IMAP, print "ready", then wait (bounded) until the server ends the
        session; {"ended": how, "waited_ms"}.
  wait: as hold, but silent after SELECT: reads until the server closes the connection by
        itself; {"ended": "closed" or "timeout", "said": what it sent, "waited_ms"}.
"""
import argparse
import base64
import email
import imaplib
import json
import poplib
import sys
import time


def subjects_of(raw_messages):
    return sorted(email.message_from_bytes(m).get("Subject", "") for m in raw_messages)


def imap(args):
    host, port = args.server.rsplit(":", 1)
    c = imaplib.IMAP4(host, int(port), timeout=30)
    caps_pre = sorted(c.capabilities)
    try:
        if args.sasl:
            c.authenticate("PLAIN", lambda _: ("%s\0%s\0%s" % (args.authzid, args.user, args.password)).encode())
        else:
            c.login(args.user, args.password)
    except imaplib.IMAP4.error as e:
        return {"ok": False, "error": str(e)}
    typ, data = c.capability()
    caps_post = sorted(data[0].decode().split())
    typ, data = c.select("INBOX")
    exists = int(data[0])
    raw = []
    if exists:
        typ, data = c.fetch("1:*", "(BODY.PEEK[HEADER])")
        raw = [part[1] for part in data if isinstance(part, tuple)]
    c.logout()
    return {"ok": True, "error": "", "caps_pre": caps_pre, "caps_post": caps_post, "exists": exists,
            "subjects": subjects_of(raw)}


def pop3(args):
    host, port = args.server.rsplit(":", 1)
    c = poplib.POP3(host, int(port), timeout=30)
    try:
        if args.sasl:
            c._shortcmd("AUTH PLAIN")  # "+ ": the response follows on its own line
            c._shortcmd(base64.b64encode(("\0%s\0%s" % (args.user, args.password)).encode()).decode())
        else:
            c.user(args.user)
            c.pass_(args.password)
    except poplib.error_proto as e:
        return {"ok": False, "error": e.args[0].decode(errors="replace")}
    count, _size = c.stat()
    raw = [b"\r\n".join(c.retr(i + 1)[1]) for i in range(count)]
    c.quit()
    return {"ok": True, "error": "", "count": count, "subjects": subjects_of(raw)}


def read(args):
    host, port = args.server.rsplit(":", 1)
    c = imaplib.IMAP4(host, int(port), timeout=30)
    c.login(args.user, args.password)
    typ, data = c.lsub()
    subscribed = sorted(d.decode().rsplit(" ", 1)[-1].strip('"') for d in data if d)
    typ, data = c.select(args.mailbox, readonly=True)
    if typ != "OK":
        return {"ok": True, "subscribed": subscribed, "exists": -1, "messages": []}
    exists = int(data[0])
    messages = []
    if exists:
        typ, data = c.fetch("1:*", "(BODY.PEEK[])")
        messages = [part[1].decode(errors="replace") for part in data if isinstance(part, tuple)]
    c.logout()
    return {"ok": True, "subscribed": subscribed, "exists": exists, "messages": messages}


def hold(args):
    host, port = args.server.rsplit(":", 1)
    c = imaplib.IMAP4(host, int(port), timeout=60)
    c.login(args.user, args.password)
    c.select("INBOX")
    print("ready", flush=True)
    start = time.monotonic()
    how = "timeout"
    while time.monotonic() - start < 50:
        try:
            typ, _ = c.noop()
            if typ != "OK":
                how = "refused"
                break
        except imaplib.IMAP4.abort as e:
            how = "bye" if "BYE" in str(e) or "UNAVAILABLE" in str(e) else "closed"
            break
        except (OSError, EOFError):
            how = "closed"
            break
        time.sleep(0.2)
    return {"ended": how, "waited_ms": int((time.monotonic() - start) * 1000)}


def wait(args):
    host, port = args.server.rsplit(":", 1)
    c = imaplib.IMAP4(host, int(port), timeout=60)
    c.login(args.user, args.password)
    c.select("INBOX")
    print("ready", flush=True)
    start = time.monotonic()
    said, how = b"", "timeout"
    c.sock.settimeout(1.0)
    while time.monotonic() - start < 50:
        try:
            data = c.sock.recv(4096)
        except TimeoutError:
            continue
        except OSError:
            how = "closed"
            break
        if not data:
            how = "closed"
            break
        said += data
    return {"ended": how, "said": said.decode(errors="replace"), "waited_ms": int((time.monotonic() - start) * 1000)}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["imap", "pop3", "hold", "read", "wait"])
    p.add_argument("--server", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--sasl", action="store_true")
    p.add_argument("--mailbox", default="INBOX")
    p.add_argument("--authzid", default="", help="with --sasl: log in as USER on this user's behalf")
    args = p.parse_args()
    result = {"imap": imap, "pop3": pop3, "hold": hold, "read": read, "wait": wait}[args.mode](args)
    print(json.dumps(result))


if __name__ == "__main__":
    sys.exit(main())
