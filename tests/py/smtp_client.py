#!/usr/bin/env python3
"""Send one message with Python's smtplib (an independent SMTP client) and report, as one
JSON line: {"ok": bool, "refused": {rcpt: [code, text]}, "error": str, "code": int}.

  --server HOST:PORT  --from ADDR  --to ADDR [--to ADDR ...]  --subject TEXT
  [--starttls --ca FILE] [--user U --password P] [--body-bytes N | --message-file F]
  [--header-from TEXT] [--message-id ID]

With --body-bytes the body is N bytes of numbered lines "<subject> line <k> xxx...", so a
receiver can check that the last line arrived.
"""
import argparse
import json
import smtplib
import ssl
import sys
from email.message import EmailMessage


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--server", required=True)
    p.add_argument("--from", dest="sender", required=True)
    p.add_argument("--to", action="append", required=True)
    p.add_argument("--subject", required=True)
    p.add_argument("--starttls", action="store_true")
    p.add_argument("--ca")
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--source", help="local address to connect from (127.0.0.2, ...)")
    p.add_argument("--header-from", help="the From field, if not the envelope sender")
    p.add_argument("--message-id", help="a Message-ID field")
    p.add_argument("--body-bytes", type=int, default=0)
    p.add_argument("--message-file", help="send these bytes as they are (--subject unused)")
    a = p.parse_args()
    host, port = a.server.rsplit(":", 1)
    msg = EmailMessage()
    msg["From"] = a.header_from or a.sender
    msg["To"] = ", ".join(a.to)
    msg["Subject"] = a.subject
    if a.message_id:
        msg["Message-ID"] = a.message_id
    if a.body_bytes:
        line_len = 76
        lines = [f"{a.subject} line {k:09d} ".ljust(line_len, "x") for k in range(a.body_bytes // (line_len + 1))]
        msg.set_content("\n".join(lines) + "\n", cte="7bit")
    else:
        msg.set_content("hello from smtplib\n.leading dot line\n")
    result = {"ok": False, "refused": {}, "error": "", "code": 0}
    try:
        source = (a.source, 0) if a.source else None
        with smtplib.SMTP(host, int(port), timeout=120, source_address=source) as s:
            s.ehlo("smtplib.example.org")
            if a.starttls:
                s.starttls(context=ssl.create_default_context(cafile=a.ca))
                s.ehlo("smtplib.example.org")
            if a.user:
                s.login(a.user, a.password)
            if a.message_file:
                with open(a.message_file, "rb") as f:
                    refused = s.sendmail(a.sender, a.to, f.read())
            else:
                refused = s.send_message(msg, from_addr=a.sender, to_addrs=a.to)
            result["ok"] = True
            result["refused"] = {k: [v[0], v[1].decode(errors="replace")] for k, v in refused.items()}
    except smtplib.SMTPRecipientsRefused as e:
        result["refused"] = {k: [v[0], v[1].decode(errors="replace")] for k, v in e.recipients.items()}
        result["error"] = "all recipients refused"
    except smtplib.SMTPResponseException as e:
        result["code"] = e.smtp_code
        result["error"] = e.smtp_error.decode(errors="replace")
    print(json.dumps(result))


if __name__ == "__main__":
    sys.exit(main())
