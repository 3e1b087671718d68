#!/usr/bin/env python3
"""POP3 interop client built on Python's poplib (an independent implementation).

  scenario: log in, check STAT/LIST/UIDL/TOP/RETR against the expected messages (given as
            files), delete message 1, quit; log in again and check the deletion; check
            that bad passwords, impersonation and the proxy login behave. Prints JSON
            {"uidl": [...]} of the remaining messages.
  uidl:     log in and print JSON {"uidl": [...]}.
  refused:  try to log in and print JSON {"error": "..."} (the server's -ERR line).
"""
import argparse
import base64
import json
import poplib
import sys


def connect(server):
    host, port = server.rsplit(":", 1)
    return poplib.POP3(host, int(port), timeout=30)


def login(server, user, password):
    p = connect(server)
    p.user(user)
    p.pass_(password)
    return p


def auth_plain(p, authzid, authcid, password):
    raw = f"{authzid}\0{authcid}\0{password}".encode()
    return p._shortcmd("AUTH PLAIN " + base64.b64encode(raw).decode())


def uidls(p):
    _, lines, _ = p.uidl()
    return [l.decode().split()[1] for l in lines]


def expect_error(fn, needle):
    try:
        fn()
    except poplib.error_proto as e:
        text = e.args[0].decode()
        assert needle in text, f"expected {needle!r} in {text!r}"
        return text
    raise AssertionError(f"expected an error containing {needle!r}")


def scenario(a):
    expected = [open(f, "rb").read() for f in a.messages]
    p = connect(a.server)
    caps = p.capa()
    for c in ("TOP", "UIDL", "USER", "SASL", "RESP-CODES"):
        assert c in caps, f"CAPA lacks {c}: {caps}"
    assert caps["SASL"] == ["PLAIN"], caps
    p.user(a.user)
    p.pass_(a.password)
    assert "USER" not in p.capa(), "USER is listed only before login"
    count, octets = p.stat()
    assert count == len(expected), (count, len(expected))
    _, listing, _ = p.list()
    sizes = [int(l.split()[1]) for l in listing]
    assert octets == sum(sizes), (octets, sizes)
    ids = uidls(p)
    assert len(set(ids)) == len(ids) == count, ids
    for n, want in enumerate(expected, 1):
        _, lines, size = p.retr(n)
        got = b"\r\n".join(lines) + b"\r\n"
        # poplib strips line endings and undoes dot-stuffing; the server adds Return-Path.
        assert got.endswith(want), f"message {n}: {got!r} does not end with {want!r}"
        assert sizes[n - 1] == len(got), (n, sizes[n - 1], len(got))
        _, top, _ = p.top(n, 1)
        blank = top.index(b"")
        assert len(top) <= blank + 2, f"TOP {n} 1 sent {len(top) - blank - 1} body lines"
        assert top[: blank + 1] == lines[: blank + 1]
    assert p.dele(1).startswith(b"+OK")
    expect_error(lambda: p.retr(1), "-ERR")
    assert p.rset().startswith(b"+OK")
    assert p.stat()[0] == count
    p.dele(1)
    assert p.quit().startswith(b"+OK")

    p = login(a.server, a.user, a.password)
    remaining = uidls(p)
    assert remaining == ids[1:], (remaining, ids)
    p.quit()

    # Wrong password, unknown user, impersonation without the proxy credential.
    for user, password in ((a.user, "wrong"), ("nobody@example.edu", "x")):
        expect_error(lambda: login(a.server, user, password), "[AUTH]")
    p = connect(a.server)
    expect_error(lambda: auth_plain(p, a.user, a.other_user, a.other_password), "[AUTH]")
    p.quit()
    # The proxy logs in for the user and sees the same maildrop.
    p = connect(a.server)
    assert auth_plain(p, a.user, a.proxy_user, a.proxy_password).startswith(b"+OK")
    assert uidls(p) == remaining
    p.quit()
    print(json.dumps({"uidl": remaining}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("command", choices=["scenario", "uidl", "refused"])
    ap.add_argument("--server", required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--other-user")
    ap.add_argument("--other-password")
    ap.add_argument("--proxy-user")
    ap.add_argument("--proxy-password")
    ap.add_argument("--message", action="append", default=[], dest="messages")
    a = ap.parse_args()
    if a.command == "scenario":
        scenario(a)
    elif a.command == "uidl":
        p = login(a.server, a.user, a.password)
        print(json.dumps({"uidl": uidls(p)}))
        p.quit()
    else:
        try:
            login(a.server, a.user, a.password)
        except poplib.error_proto as e:
            print(json.dumps({"error": e.args[0].decode()}))
            return
        print(json.dumps({"error": None}))


if __name__ == "__main__":
    sys.exit(main())
