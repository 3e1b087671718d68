#!/usr/bin/env python3
"""IMAP side of the migration test, with Python's imaplib (an independent client). Prints JSON.

  fill   --server H:P --user U --password P --messages N
         make folders (nested, non-ASCII, one left empty), append N messages spread over
         them with flags, keywords and internal dates, expunge some (UID gaps), subscribe
  record --server H:P --user U --password P
         every mailbox: UIDVALIDITY, UIDNEXT and [uid, flags, internal date, size, sha256
         of the bytes] of each message; the subscribed mailboxes
"""
import argparse
import hashlib
import imaplib
import json
import random
import re
import sys

FOLDERS = ["INBOX", "Archive", "Archive/2024", "&ANw-n&AO8-", "Sent", "Lists/rust"]
EMPTY = "Empty"
SUBSCRIBED = ["INBOX", "Archive/2024", "&ANw-n&AO8-", "Sent"]
KEYWORDS = ["$Label1", "$Forwarded", "Work", "$MDNSent", "Later"]
SYSTEM = ["\\Seen", "\\Answered", "\\Flagged", "\\Draft"]


def connect(a):
    host, port = a.server.rsplit(":", 1)
    c = imaplib.IMAP4(host, int(port), timeout=60)
    c.login(a.user, a.password)
    return c


def ok(r):
    assert r[0] == "OK", r
    return r


def fill(a):
    c = connect(a)
    rnd = random.Random(25)
    for f in FOLDERS[1:] + [EMPTY]:
        r = c.create(f)
        # The server may have made the special-use ones at login.
        assert r[0] == "OK" or b"ALREADYEXISTS" in r[1][0], r
    for f in SUBSCRIBED:
        ok(c.subscribe(f))
    for k in range(a.messages):
        folder = FOLDERS[k % len(FOLDERS)]
        flags = [f for f in SYSTEM if rnd.random() < 0.3]
        flags += [kw for kw in KEYWORDS if rnd.random() < 0.15]
        body = "".join(f"line {i} of message {k}\r\n" for i in range(rnd.randint(1, 40)))
        msg = (f"From: sender{k % 17}@example.org\r\nTo: user@example.edu\r\n"
               f"Subject: migration {k}\r\nMessage-ID: <mig{k}@example.org>\r\n\r\n{body}").encode()
        when = imaplib.Time2Internaldate(1_600_000_000 + 3_600 * k)
        ok(c.append(folder, "(" + " ".join(flags) + ")", when, msg))
    # Gaps: expunge every 7th message of INBOX and the last one of Sent.
    ok(c.select("INBOX"))
    typ, data = ok(c.uid("SEARCH", "ALL"))
    uids = data[0].split()
    gone = b",".join(uids[::7])
    ok(c.uid("STORE", gone, "+FLAGS", "(\\Deleted)"))
    ok(c.expunge())
    ok(c.select("Sent"))
    typ, data = ok(c.uid("SEARCH", "ALL"))
    ok(c.uid("STORE", data[0].split()[-1], "+FLAGS", "(\\Deleted)"))
    ok(c.expunge())
    c.logout()
    print(json.dumps({"appended": a.messages}))


def mailboxes(c):
    typ, data = ok(c.list())
    out = []
    for line in data:
        m = re.match(rb'\(([^)]*)\) "(.)" (.*)$', line)
        flags, name = m.group(1), m.group(3).decode()
        if name.startswith('"'):
            name = name[1:-1]
        if b"\\Noselect" not in flags and b"\\NonExistent" not in flags:
            out.append(name)
    return sorted(out)


def record(a):
    c = connect(a)
    state = {}
    for name in mailboxes(c):
        quoted = '"' + name + '"'
        typ, data = ok(c.status(quoted, "(UIDVALIDITY UIDNEXT MESSAGES)"))
        st = data[0].decode()
        uv = int(re.search(r"UIDVALIDITY (\d+)", st).group(1))
        nxt = int(re.search(r"UIDNEXT (\d+)", st).group(1))
        ok(c.select(quoted, readonly=True))
        msgs = []
        typ, data = c.uid("FETCH", "1:*", "(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])")
        for item in data:
            if not isinstance(item, tuple):
                continue
            head = item[0].decode()
            uid = int(re.search(r"UID (\d+)", head).group(1))
            flags = sorted(f for f in re.search(r"FLAGS \(([^)]*)\)", head).group(1).split() if f != "\\Recent")
            date = re.search(r'INTERNALDATE "([^"]*)"', head).group(1)
            size = int(re.search(r"RFC822.SIZE (\d+)", head).group(1))
            msgs.append([uid, flags, date, size, hashlib.sha256(item[1]).hexdigest()])
        state[name] = {"uidvalidity": uv, "uidnext": nxt, "messages": sorted(msgs)}
    typ, data = ok(c.lsub())
    subscribed = sorted(re.match(rb'\([^)]*\) "." (.*)$', l).group(1).decode().strip('"') for l in data if l)
    c.logout()
    print(json.dumps({"mailboxes": state, "subscribed": subscribed}))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("command", choices=["fill", "record"])
    p.add_argument("--server", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--messages", type=int, default=0)
    a = p.parse_args()
    {"fill": fill, "record": record}[a.command](a)


if __name__ == "__main__":
    sys.exit(main())
