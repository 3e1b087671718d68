#!/usr/bin/env python3
"""List mailboxes, flags and Message-IDs over IMAP with Python's imaplib (an independent
client). Usage: imap_list.py HOST PORT USER PASSWORD MAILBOX...  Prints one JSON object."""
import imaplib, json, re, socket, sys

socket.setdefaulttimeout(10)
host, port, user, password, boxes = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5:]
m = imaplib.IMAP4(host, port)
m.login(user, password)
out = {}
for box in boxes:
    typ, _ = m.select('"%s"' % box, readonly=True)
    assert typ == "OK", box
    typ, data = m.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
    msgs = []
    for item in data:
        if not isinstance(item, tuple):
            continue
        flags = re.search(rb"FLAGS \(([^)]*)\)", item[0]).group(1).decode().split()
        mid = item[1].decode().split(":", 1)[1].strip()
        msgs.append({"flags": sorted(f for f in flags if f != "\\Recent"), "message_id": mid})
    out[box] = sorted(msgs, key=lambda x: x["message_id"])
m.logout()
print(json.dumps(out))
