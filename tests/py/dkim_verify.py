#!/usr/bin/python3
"""Verify a message's DKIM signature with dkimpy (Debian's python3-dkim), an independent
verifier, asking the DNS server at --dns IP:PORT for the key (dnspython). Prints one JSON
line: {"ok": bool, "domain": str, "selector": str}.

  dkim_verify.py --dns 127.0.0.1:PORT FILE
"""
import argparse
import json

import dkim
import dns.resolver


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dns", required=True)
    p.add_argument("file")
    a = p.parse_args()
    ip, port = a.dns.rsplit(":", 1)

    def txt(name, timeout=5):
        r = dns.resolver.Resolver(configure=False)
        r.nameservers = [ip]
        r.port = int(port)
        r.lifetime = timeout
        answer = r.resolve(name.decode().rstrip("."), "TXT")
        return b"".join(b"".join(rd.strings) for rd in answer)

    with open(a.file, "rb") as f:
        msg = f.read()
    if b"\r\n" not in msg:
        msg = msg.replace(b"\n", b"\r\n")
    d = dkim.DKIM(msg)
    ok = d.verify(dnsfunc=txt)
    print(json.dumps({
        "ok": bool(ok),
        "domain": (d.domain or b"").decode(),
        "selector": (d.selector or b"").decode(),
    }))


if __name__ == "__main__":
    main()
