#!/usr/bin/env python3
"""IMAP side of the move test, with Python's imaplib (an independent client). Prints JSON.

  prepare  --server H:P --user U --password P   folders and flags on the seeded INBOX
  state    --server H:P --user U --password P   every mailbox: UIDVALIDITY, HIGHESTMODSEQ,
                                                 [uid, flags, modseq], subjects of INBOX
  workload --server H:P --user U --password P --stop FILE --out FILE
           add keyword $kN to INBOX messages until FILE exists; reconnects after BYE;
           writes {"acked": [[uid, kw]], "tried": [uid]}
  qresync  --server H:P --user U --password P --uidvalidity V --modseq M
           SELECT INBOX (QRESYNC (V M)): {"changed": [uid], "vanished": str}
"""
import argparse
import imaplib
import json
import os
import re
import sys
import time


def connect(a):
    host, port = a.server.rsplit(":", 1)
    c = imaplib.IMAP4(host, int(port), timeout=30)
    c.login(a.user, a.password)
    return c


def parse_fetch(data):
    out = []
    for item in data:
        if isinstance(item, tuple):
            item = item[0]
        if not item:
            continue
        text = item.decode(errors="replace")
        uid = re.search(r"UID (\d+)", text)
        flags = re.search(r"FLAGS \(([^)]*)\)", text)
        modseq = re.search(r"MODSEQ \((\d+)\)", text)
        email_id = re.search(r"EMAILID \(([^)]*)\)", text)
        saved = re.search(r'SAVEDATE (NIL|"[^"]*")', text)
        if uid:
            # \Recent belongs to the session that saw a message first, not to the mailbox.
            kept = [f for f in (flags.group(1) if flags else "").split() if f != "\\Recent"]
            out.append([int(uid.group(1)), sorted(kept),
                        int(modseq.group(1)) if modseq else 0,
                        email_id.group(1) if email_id else None,
                        saved.group(1) if saved else None])
    return sorted(out)


def prepare(a):
    c = connect(a)
    c.select("INBOX")
    assert c.create("Saved")[0] == "OK"
    assert c.create("Projects/2026")[0] == "OK"
    c.subscribe("Saved")
    assert c.uid("COPY", "1:100", "Saved")[0] == "OK"
    assert c.uid("COPY", "101:150", "Projects/2026")[0] == "OK"
    assert c.uid("STORE", "1:50", "+FLAGS", r"(\Seen)")[0] == "OK"
    assert c.uid("STORE", "20:30", "+FLAGS", r"(\Flagged $Important)")[0] == "OK"
    assert c.uid("STORE", "140:160", "+FLAGS", r"(\Deleted)")[0] == "OK"
    assert c.expunge()[0] == "OK"
    c.select("Saved")
    assert c.uid("STORE", "1:10", "+FLAGS", r"(\Answered)")[0] == "OK"
    # METADATA (RFC 5464) of a folder and of the user's server moves too.
    for mailbox, entries in [("Saved", '/private/comment "kept for later"'),
                             ('""', '/shared/vendor/test/theme "dark" /private/vendor/test/n "1"')]:
        typ, data = c._simple_command("SETMETADATA", mailbox, "(%s)" % entries)
        assert typ == "OK", data
    c.logout()
    print(json.dumps({"ok": True}))


# imaplib knows only the commands it was written with.
imaplib.Commands.setdefault("SETMETADATA", ("AUTH", "SELECTED"))
imaplib.Commands.setdefault("GETMETADATA", ("AUTH", "SELECTED"))


def metadata(c, mailbox):
    """Every entry of a mailbox ('""' for the server), as the server printed them."""
    typ, data = c._simple_command("GETMETADATA", "(DEPTH infinity)", mailbox, "(/private /shared)")
    assert typ == "OK", data
    typ, lines = c._untagged_response(typ, data, "METADATA")
    return [l.decode() if isinstance(l, bytes) else repr(l) for l in lines if l]


def state(a):
    c = connect(a)
    c.enable("CONDSTORE")
    typ, boxes = c.list()
    out = {}
    for line in boxes:
        name = line.decode().rsplit(' "/" ', 1)[-1].strip('"')
        typ, _ = c.select('"%s"' % name, readonly=True)
        assert typ == "OK", name
        uv = int(c.response("UIDVALIDITY")[1][0])
        hm = c.response("HIGHESTMODSEQ")[1]
        typ, data = c.uid("FETCH", "1:*", "(FLAGS MODSEQ EMAILID SAVEDATE)")
        msgs = parse_fetch(data) if typ == "OK" and data != [None] else []
        entry = {"uidvalidity": uv, "highestmodseq": int(hm[0]) if hm and hm[0] else 0, "messages": msgs}
        if name == "INBOX":
            typ, data = c.uid("FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            entry["subjects"] = sorted(
                item[1].decode(errors="replace").split(":", 1)[1].strip()
                for item in data if isinstance(item, tuple))
        entry["metadata"] = metadata(c, '"%s"' % name)
        out[name] = entry
    out["server metadata"] = metadata(c, '""')
    c.logout()
    print(json.dumps(out))


def workload(a):
    acked, tried = [], []
    uids = None
    c = None
    n = 0
    while not os.path.exists(a.stop):
        try:
            if c is None:
                c = connect(a)
                c.select("INBOX")
                if uids is None:
                    typ, data = c.uid("SEARCH", "ALL")
                    uids = [int(u) for u in data[0].split()][:200]
            uid = uids[n % len(uids)]
            kw = "$k%d" % n
            n += 1
            tried.append(uid)
            typ, _ = c.uid("STORE", str(uid), "+FLAGS", "(%s)" % kw)
            if typ == "OK":
                acked.append([uid, kw])
        except (imaplib.IMAP4.abort, imaplib.IMAP4.error, OSError):
            c = None
            time.sleep(0.2)
        time.sleep(0.02)
    with open(a.out, "w") as f:
        json.dump({"acked": acked, "tried": tried}, f)


def qresync(a):
    c = connect(a)
    c.enable("QRESYNC")
    typ, data = c._simple_command("SELECT", "INBOX (QRESYNC (%d %d))" % (a.uidvalidity, a.modseq))
    assert typ == "OK", data
    changed = sorted(int(u) for item in c.untagged_responses.get("FETCH", [])
                     for u in re.findall(r"UID (\d+)", item.decode() if isinstance(item, bytes) else str(item)))
    vanished = [v.decode() if isinstance(v, bytes) else str(v) for v in c.untagged_responses.get("VANISHED", [])]
    c.logout()
    print(json.dumps({"changed": changed, "vanished": vanished}))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("command")
    p.add_argument("--server", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--stop")
    p.add_argument("--out")
    p.add_argument("--uidvalidity", type=int)
    p.add_argument("--modseq", type=int)
    a = p.parse_args()
    {"prepare": prepare, "state": state, "workload": workload, "qresync": qresync}[a.command](a)


if __name__ == "__main__":
    sys.exit(main())
