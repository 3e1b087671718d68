"""IMAP QUOTA (RFC 9208) as a client sees it: logs in, appends --append messages of
--bytes each (reporting each APPEND's answer), then GETQUOTAROOT INBOX, GETQUOTA "" and
STATUS SIZE MESSAGES of every mailbox; one JSON line."""
import argparse, imaplib, json, time

def main():
    p = argparse.ArgumentParser()
    p.add_argument("--server"); p.add_argument("--user"); p.add_argument("--password")
    p.add_argument("--append", type=int, default=0); p.add_argument("--bytes", type=int, default=1000)
    a = p.parse_args()
    host, port = a.server.rsplit(":", 1)
    c = imaplib.IMAP4(host, int(port), timeout=30)
    c.login(a.user, a.password)
    typ, caps = c.capability()
    out = {"capabilities": caps[0].decode(), "appends": []}
    for n in range(a.append):
        body = (f"Subject: appended {n}\r\n\r\n" + "z" * a.bytes + "\r\n").encode()
        typ, data = c.append("INBOX", None, imaplib.Time2Internaldate(time.time()), body)
        out["appends"].append(f"{typ} {data[0].decode(errors='replace') if data and data[0] else ''}")
    typ, data = c._simple_command("GETQUOTAROOT", "INBOX")
    out["quotaroot"] = [x.decode() for x in c.untagged_responses.pop("QUOTAROOT", [])]
    out["quota"] = [x.decode() for x in c.untagged_responses.pop("QUOTA", [])]
    out["getquotaroot"] = typ
    typ, data = c._simple_command("GETQUOTA", '""')
    out["getquota"] = typ
    out["quota2"] = [x.decode() for x in c.untagged_responses.pop("QUOTA", [])]
    typ, boxes = c.list()
    sizes = {}
    for b in boxes:
        name = b.decode().rsplit(' "/" ', 1)[-1].strip('"')
        typ, st = c.status(f'"{name}"', "(SIZE MESSAGES)")
        text = st[0].decode()
        size = int(text.split("SIZE ")[1].split()[0].rstrip(")"))
        msgs = int(text.split("MESSAGES ")[1].split()[0].rstrip(")"))
        sizes[name] = [size, msgs]
    out["status"] = sizes
    c.logout()
    print(json.dumps(out))

main()
