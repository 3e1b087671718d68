#!/usr/bin/env python3
"""TLS checks with Python's imaplib/poplib/ssl (independent TLS and protocol clients):
passwords are refused without TLS, accepted after STARTTLS/STLS and on the implicit-TLS
ports, and bytes pipelined after STARTTLS are never executed. Prints JSON {"ok": true}.
"""
import argparse
import imaplib
import json
import poplib
import socket
import ssl
import sys


def hostport(s):
    host, port = s.rsplit(":", 1)
    return host, int(port)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--imap", required=True)
    ap.add_argument("--imaps", required=True)
    ap.add_argument("--pop3", required=True)
    ap.add_argument("--pop3s", required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    a = ap.parse_args()
    ctx = ssl.create_default_context(cafile=a.ca)

    # IMAP: no password before TLS.
    m = imaplib.IMAP4(*hostport(a.imap), timeout=30)
    assert "LOGINDISABLED" in m.capabilities and "STARTTLS" in m.capabilities, m.capabilities
    try:
        m.login(a.user, a.password)
        raise AssertionError("LOGIN accepted without TLS")
    except imaplib.IMAP4.error as e:
        assert "PRIVACYREQUIRED" in str(e), e
    m.starttls(ssl_context=ctx)
    assert "AUTH=PLAIN" in m.capabilities and "STARTTLS" not in m.capabilities, m.capabilities
    typ, _ = m.login(a.user, a.password)
    assert typ == "OK"
    assert m.select("INBOX")[0] == "OK"
    m.logout()
    m = imaplib.IMAP4_SSL(*hostport(a.imaps), ssl_context=ctx, timeout=30)
    assert m.login(a.user, a.password)[0] == "OK"
    m.logout()

    # STARTTLS with a pipelined command: the plaintext NOOP must never be answered.
    s = socket.create_connection(hostport(a.imap), timeout=10)
    s.recv(4096)
    s.sendall(b"a STARTTLS\r\nb NOOP\r\n")
    got = b""
    try:
        while not got.endswith(b"\r\n") or b"a OK" not in got:
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
        rest = s.recv(4096)
    except (socket.timeout, ConnectionResetError):
        rest = b""
    assert b"b OK" not in got + rest, got + rest
    s.close()

    # POP3: USER refused before STLS, fine after; POP3S works.
    p = poplib.POP3(*hostport(a.pop3), timeout=30)
    caps = p.capa()
    assert "STLS" in caps and "USER" not in caps, caps
    try:
        p.user(a.user)
        raise AssertionError("USER accepted without TLS")
    except poplib.error_proto as e:
        assert b"[AUTH]" in e.args[0], e
    p.stls(context=ctx)
    p.user(a.user)
    p.pass_(a.password)
    p.stat()
    p.quit()
    p = poplib.POP3_SSL(*hostport(a.pop3s), context=ctx, timeout=30)
    p.user(a.user)
    p.pass_(a.password)
    p.quit()
    print(json.dumps({"ok": True}))


if __name__ == "__main__":
    sys.exit(main())
