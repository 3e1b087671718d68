#!/usr/bin/env python3
"""IMAP interop client built on Python's imaplib (an independent implementation).

  scenario: the full session of the interop test: special-use folders exist after the
            first login, create folders, append with flags and dates, search, fetch whole
            messages and parts, store flags, copy, move, expunge; ENABLE IMAP4rev2 (ESEARCH
            answers, LIST on SELECT, no RECENT) and a saved result used as `$`; prints JSON facts.
  idle:     select INBOX, IDLE, print "idling" and wait (bounded) for an EXISTS pushed by
            a delivery made meanwhile; prints JSON {"exists": n, "waited_ms": ms}.
  state:    print JSON {"uidvalidity", "uids", "flags"} of INBOX.
  bye:      select INBOX, IDLE, print "idling" and wait for the server to say BYE or drop.
  flag:     select INBOX and set \Flagged on message 1.
  (idle with --want fetch waits for a FETCH, i.e. a flag change, instead of an EXISTS.)
"""
import argparse
import email
import imaplib
import json
import re
import socket
import sys
import time

MULTIPART = (
    b"From: Ann <ann@example.org>\r\nTo: user1@example.edu\r\nSubject: Report with attachment\r\n"
    b"Message-ID: <multi@example.org>\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: multipart/mixed; boundary=\"XyZ\"\r\n\r\n"
    b"--XyZ\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nThe quarterly numbers are attached.\r\n"
    b"--XyZ\r\nContent-Type: application/octet-stream; name=\"n.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    b"AAECAwQF\r\n--XyZ--\r\n"
)


def connect(server):
    host, port = server.rsplit(":", 1)
    return imaplib.IMAP4(host, int(port), timeout=30)


def ok(res):
    typ, data = res
    assert typ == "OK", f"{typ} {data}"
    return data


def uid_of(data):
    return int(re.search(rb"UID (\d+)", data[0] if isinstance(data[0], bytes) else data[0][0]).group(1))


def scenario(a):
    m = connect(a.server)
    assert "AUTH=PLAIN" in m.capabilities and "IDLE" in m.capabilities, m.capabilities
    ok(m.login(a.user, a.password))
    folders = [l.decode() for l in ok(m.list())]
    for special in ("Sent", "Drafts", "Trash", "Junk", "Archive"):
        assert any(f.endswith(f'"{special}"') and f"\\{special}" in f for f in folders), folders
    ok(m.create("Projects"))
    ok(m.create("Projects/2026"))
    typ, _ = m.create("Projects")
    assert typ == "NO", "creating an existing mailbox must fail"
    folders = [l.decode() for l in ok(m.list('""', "Projects*"))]
    assert any("\\HasChildren" in f and f.endswith('"Projects"') for f in folders), folders
    assert any(f.endswith('"Projects/2026"') for f in folders), folders
    ok(m.subscribe("Projects"))
    lsub = [l.decode() for l in ok(m.lsub())]
    assert any(f.endswith('"Projects"') for f in lsub), lsub

    # APPEND with flags and an internal date; APPENDUID (UIDPLUS).
    date = imaplib.Time2Internaldate(time.mktime((2025, 3, 14, 15, 9, 26, 0, 0, -1)))
    typ, data = m.append("Projects", r"(\Flagged $Work)", date, MULTIPART)
    assert typ == "OK" and b"APPENDUID" in data[0], data
    typ, data = m.append("Projects", r"(\Seen)", None, b"Subject: second\r\nFrom: b@example.org\r\n\r\nplain body\r\n")
    assert typ == "OK", data
    typ, _ = m.append("Nowhere", None, None, b"Subject: x\r\n\r\ny\r\n")
    assert typ == "NO", "APPEND to a missing mailbox must fail"

    status = ok(m.status("Projects", "(MESSAGES UNSEEN UIDNEXT UIDVALIDITY)"))[0].decode()
    assert "MESSAGES 2" in status and "UNSEEN 1" in status, status

    typ, data = m.select("Projects")
    assert typ == "OK" and data == [b"2"], data
    # SEARCH: flags, header, body, size, NOT/OR.
    assert ok(m.search(None, "FLAGGED"))[0].split() == [b"1"]
    assert ok(m.search(None, "UNSEEN"))[0].split() == [b"1"]
    assert ok(m.search(None, "SUBJECT", "quarterly"))[0].split() == []
    assert ok(m.search(None, "BODY", "quarterly"))[0].split() == [b"1"]
    assert ok(m.search(None, "FROM", "ann@example.org"))[0].split() == [b"1"]
    assert ok(m.search(None, "OR", "SEEN", "FLAGGED"))[0].split() == [b"1", b"2"]
    assert ok(m.search(None, "NOT", "SEEN", "KEYWORD", "$Work"))[0].split() == [b"1"]
    assert ok(m.uid("SEARCH", None, "ALL"))[0].split() != []
    typ, _ = m.search("KOI8-R", "ALL")
    assert typ == "NO", "unknown charsets are refused"

    # FETCH: whole message, header fields, MIME parts, partial, envelope; PEEK keeps \Unseen.
    data = ok(m.fetch("1", "(BODY.PEEK[])"))
    assert data[0][1] == MULTIPART, data[0][1]
    data = ok(m.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)])"))
    hdr = data[0][1].decode()
    assert hdr.startswith("From: Ann") and "Subject: Report" in hdr and "To:" not in hdr, hdr
    data = ok(m.fetch("1", "(BODY.PEEK[1])"))
    assert data[0][1].startswith(b"The quarterly numbers"), data
    data = ok(m.fetch("1", "(BODY.PEEK[2])"))
    assert data[0][1].strip() == b"AAECAwQF", data
    data = ok(m.fetch("1", "(BODY.PEEK[2.MIME])"))
    assert b"application/octet-stream" in data[0][1], data
    data = ok(m.fetch("1", "(BODY.PEEK[TEXT]<0.6>)"))
    assert data[0][1] == MULTIPART.split(b"\r\n\r\n", 1)[1][:6], data
    data = ok(m.fetch("1", "(FLAGS INTERNALDATE RFC822.SIZE ENVELOPE)"))
    meta = data[0].decode() if isinstance(data[0], bytes) else data[0][0].decode()
    assert "\\Flagged" in meta and "$Work" in meta and "\\Seen" not in meta, meta
    assert "14-Mar-2025" in meta and f"RFC822.SIZE {len(MULTIPART)}" in meta, meta
    assert '"Report with attachment"' in meta and '"<multi@example.org>"' in meta, meta
    # A non-peek body fetch sets \Seen.
    data = ok(m.fetch("1", "(BODY[TEXT])"))
    flags = " ".join(x.decode() if isinstance(x, bytes) else x[0].decode() for x in data)
    assert "\\Seen" in flags, data
    parsed = email.message_from_bytes(ok(m.fetch("1", "(RFC822)"))[0][1])
    assert parsed["Subject"] == "Report with attachment"

    # STORE: add/remove/replace, .SILENT answers nothing.
    data = ok(m.store("2", "+FLAGS", r"(\Answered)"))
    assert b"\\Answered" in data[0] and b"\\Seen" in data[0], data
    ok(m.store("2", "-FLAGS", r"(\Seen)"))
    data = ok(m.store("2", "FLAGS.SILENT", r"(\Draft)"))
    assert data == [None], data
    assert ok(m.search(None, "DRAFT"))[0].split() == [b"2"]

    # COPY and MOVE report COPYUID; MOVE expunges from the source.
    typ, data = m.copy("1", "Archive")
    assert typ == "OK", data
    typ, data = m.uid("MOVE", str(uid_of(ok(m.fetch("2", "(UID)")))), "Trash")
    assert typ == "OK", data
    assert m.untagged_responses.pop("EXPUNGE", None) == [b"2"], "MOVE did not announce the expunge"
    assert ok(m.search(None, "ALL"))[0].split() == [b"1"], "MOVE left the message in the source"
    # EXPUNGE removes \Deleted messages only.
    ok(m.store("1", "+FLAGS", r"(\Deleted)"))
    typ, data = m.expunge()
    assert typ == "OK" and data == [b"1"], data
    assert ok(m.select("Projects")) == [b"0"]
    archive = ok(m.select("Archive"))
    trash = ok(m.select("Trash"))
    assert archive == [b"1"] and trash == [b"1"], (archive, trash)
    # Bad input gets BAD/NO, not a dropped connection.
    for bad in ("FETCH", "FETCH 1 (NOSUCHITEM)", "STORE 1 +FLAGS", "SELECT", "FETCH 99 FLAGS"):
        try:
            typ, data = m._simple_command(*bad.split(" ", 1)) if " " in bad else m._simple_command(bad)
        except imaplib.IMAP4.error as e:
            assert "BAD" in str(e) or "NO" in str(e), (bad, e)
        else:
            assert typ in ("BAD", "NO"), (bad, typ, data)
    ok(m.noop())
    # Names that would escape the Maildir are refused.
    for evil in ("../../etc", "a/../../b", ".hidden"):
        typ, _ = m.create(evil)
        assert typ == "NO", evil
    ok(m.rename("Projects/2026", "Projects/2027"))
    ok(m.delete("Projects/2027"))
    m.logout()

    # IMAP4rev2 once enabled (RFC 9051) and SEARCHRES (RFC 5182), through imaplib's generic
    # commands: it knows neither.
    m = connect(a.server)
    assert "IMAP4REV2" in m.capabilities and "SEARCHRES" in m.capabilities, m.capabilities
    ok(m.login(a.user, a.password))
    typ, data = m.enable("IMAP4rev2")
    enabled = m.untagged_responses.pop("ENABLED", None)
    assert typ == "OK" and [e.upper() for e in enabled or []] == [b"IMAP4REV2"], (data, enabled)
    typ, data = m.select("Archive")
    assert typ == "OK" and data == [b"1"], data
    assert "RECENT" not in m.untagged_responses, m.untagged_responses
    assert [l for l in m.untagged_responses.get("LIST", []) if l.endswith(b'"Archive"')], m.untagged_responses
    typ, data = m._simple_command("SEARCH", "FLAGGED")
    esearch = m._untagged_response(typ, data, "ESEARCH")[1]
    assert typ == "OK" and esearch[0].endswith(b"ALL 1"), esearch
    assert m.untagged_responses.get("SEARCH") is None, "rev2 answers SEARCH with ESEARCH only"
    typ, data = m._simple_command("SEARCH", "RETURN", "(SAVE)", "FLAGGED")
    assert typ == "OK" and "ESEARCH" not in m.untagged_responses, m.untagged_responses
    data = ok(m.fetch("$", "(FLAGS)"))
    assert b"\\Flagged" in data[0], data
    m.logout()

    # Another user's login cannot see this user's mail; wrong passwords fail.
    m = connect(a.server)
    try:
        m.login(a.user, "wrong")
        raise AssertionError("wrong password accepted")
    except imaplib.IMAP4.error as e:
        assert "AUTHENTICATIONFAILED" in str(e), e
    m = connect(a.server)
    ok(m.login(a.other_user, a.other_password))
    names = [l.decode() for l in ok(m.list())]
    assert not any("Projects" in n for n in names), names
    typ, _ = m.select("Archive")
    assert typ == "OK" and m.select("Archive")[1] == [b"0"]
    m.logout()
    print(json.dumps({"ok": True}))


def state(a):
    m = connect(a.server)
    ok(m.login(a.user, a.password))
    ok(m.select("INBOX"))
    uv = int(re.search(rb"\d+", m.untagged_responses["UIDVALIDITY"][0]).group())
    data = ok(m.fetch("1:*", "(UID FLAGS)")) if m.select("INBOX")[1] != [b"0"] else []
    uids, flags = [], []
    for d in data:
        d = d.decode() if isinstance(d, bytes) else d[0].decode()
        uids.append(int(re.search(r"UID (\d+)", d).group(1)))
        # \Recent belongs to the session that saw a message first, not to the mailbox.
        flags.append(" ".join(f for f in re.search(r"FLAGS \(([^)]*)\)", d).group(1).split() if f != "\\Recent"))
    m.logout()
    print(json.dumps({"uidvalidity": uv, "uids": uids, "flags": flags}))


def idle_session(a, want_bye):
    m = connect(a.server)
    ok(m.login(a.user, a.password))
    exists = int(ok(m.select("INBOX"))[0])
    tag = m._new_tag().decode()
    m.send(f"{tag} IDLE\r\n".encode())
    assert m.readline().startswith(b"+"), "no continuation for IDLE"
    print("idling", flush=True)
    start = time.time()
    m.sock.settimeout(a.wait)
    try:
        while True:
            line = m.readline()
            if not line:
                print(json.dumps({"bye": True, "closed": True}))
                return
            if want_bye and line.startswith(b"* BYE"):
                print(json.dumps({"bye": True, "line": line.decode().strip()}))
                return
            mm = re.match(rb"\* (\d+) EXISTS", line)
            woke = mm and int(mm.group(1)) > exists
            if a.want == "fetch":
                mm = re.match(rb"\* (\d+) FETCH .*Flagged", line)
                woke = mm is not None
            if woke and not want_bye:
                waited = int((time.time() - start) * 1000)
                m.send(b"DONE\r\n")
                while not m.readline().startswith(tag.encode()):
                    pass
                m.logout()
                print(json.dumps({"exists": int(mm.group(1)), "waited_ms": waited}))
                return
    except (socket.timeout, OSError) as e:
        print(json.dumps({"bye": want_bye and isinstance(e, OSError) and not isinstance(e, socket.timeout), "timeout": True}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("command", choices=["scenario", "idle", "state", "bye", "flag"])
    ap.add_argument("--want", choices=["exists", "fetch"], default="exists")
    ap.add_argument("--server", required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--other-user")
    ap.add_argument("--other-password")
    ap.add_argument("--wait", type=float, default=20)
    a = ap.parse_args()
    if a.command == "scenario":
        scenario(a)
    elif a.command == "state":
        state(a)
    elif a.command == "flag":
        m = connect(a.server)
        ok(m.login(a.user, a.password))
        ok(m.select("INBOX"))
        ok(m.store("1", "+FLAGS", r"(\Flagged)"))
        m.logout()
        print(json.dumps({"ok": True}))
    else:
        idle_session(a, a.command == "bye")


if __name__ == "__main__":
    sys.exit(main())
