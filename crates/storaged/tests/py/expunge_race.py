#!/usr/bin/env python3
"""FETCH racing EXPUNGE of the same messages, while another user's mail reuses the freed files.

For --seconds, on one server:
  - a writer session per user APPENDs a batch of messages, then marks them all \\Deleted and
    EXPUNGEs them, and again;
  - two reader sessions of the first user UID FETCH every message's BODY[] in a loop.
Every message names its owner and serial and carries a body made from them, so a fetched
body proves whose message it is: the readers check each one against the message that was
appended under that UID. Prints JSON counts: fetched, expunged, serverbug (tagged NO
[SERVERBUG] answers), mismatched (bodies that are not the message of that UID, or not whole),
errors (other failures, with the first few texts).
"""
import argparse
import imaplib
import json
import re
import sys
import threading
import time
import zlib

BATCH = 12
UID_RE = re.compile(rb"UID (\d+)")


def message(owner, serial):
    """A message that names its owner and serial; sizes vary so files are reused at all sizes."""
    words = f"{owner}-{serial} ".encode() * (20 + (serial * 37) % 400)
    body = b"\r\n".join(words[i : i + 76] for i in range(0, len(words), 76))
    head = f"From: {owner}\r\nSubject: race {serial}\r\nX-Owner: {owner}\r\nX-Serial: {serial}\r\n".encode()
    text = head + b"\r\n" + body + b"\r\n"
    return text + f"X-Trailer-Crc: {zlib.crc32(text)}\r\n".encode()


def connect(server, user, password):
    host, port = server.rsplit(":", 1)
    m = imaplib.IMAP4(host, int(port), timeout=60)
    m.login(user, password)
    m.select("INBOX")
    return m


def logout(m):
    """Log out, ignoring a connection the server already closed."""
    try:
        m.logout()
    except Exception:  # noqa: BLE001
        pass


class Shared:
    def __init__(self):
        self.lock = threading.Lock()
        self.appended = {}  # uid -> serial, for the first user
        self.fetched = 0
        self.expunged = 0
        self.serverbug = 0
        self.mismatched = 0
        self.errors = []

    def error(self, text):
        with self.lock:
            self.errors.append(text)


def writer(a, user, password, shared, record, stop):
    m = connect(a.server, user, password)
    serial = 0
    try:
        while not stop.is_set():
            for _ in range(BATCH):
                serial += 1
                typ, data = m.append("INBOX", None, None, message(user, serial))
                if typ != "OK":
                    shared.error(f"APPEND {typ} {data}")
                    continue
                found = re.search(rb"APPENDUID \d+ (\d+)", data[0])
                if record and found:
                    with shared.lock:
                        shared.appended[int(found.group(1))] = serial
            m.store("1:*", "+FLAGS", r"(\Deleted)")
            typ, data = m.expunge()
            if typ != "OK":
                shared.error(f"EXPUNGE {typ} {data}")
            with shared.lock:
                shared.expunged += len([d for d in data if d])
    except Exception as e:  # noqa: BLE001 - reported, the test fails on it
        shared.error(f"writer {user}: {e!r}")
    finally:
        logout(m)


def check(owner, shared, uid, body):
    """Whether `body` is, whole, the message appended under `uid`."""
    with shared.lock:
        serial = shared.appended.get(uid)
    if serial is None:
        return True  # appended before its APPENDUID was recorded: still checked below
    return body == message(owner, serial)


def reader(a, shared, stop):
    m = connect(a.server, a.user, a.password)
    try:
        while not stop.is_set():
            m.noop()
            typ, data = m.uid("FETCH", "1:*", "(UID BODY.PEEK[])")
            if typ == "NO":
                text = b" ".join(d for d in data if isinstance(d, bytes))
                if b"SERVERBUG" in text:
                    with shared.lock:
                        shared.serverbug += 1
                continue
            for item in data:
                if not isinstance(item, tuple):
                    continue
                found = UID_RE.search(item[0])
                body = item[1]
                whole = re.search(rb"X-Owner: (\S+)\r\nX-Serial: (\d+)\r\n", body)
                ok = (
                    found is not None
                    and whole is not None
                    and body == message(whole.group(1).decode(), int(whole.group(2)))
                    and whole.group(1).decode() == a.user
                    and check(a.user, shared, int(found.group(1)), body)
                )
                with shared.lock:
                    shared.fetched += 1
                    if not ok:
                        shared.mismatched += 1
    except imaplib.IMAP4.error as e:
        if b"SERVERBUG" in str(e).encode():
            with shared.lock:
                shared.serverbug += 1
        shared.error(f"reader: {e!r}")
    except Exception as e:  # noqa: BLE001
        shared.error(f"reader: {e!r}")
    finally:
        logout(m)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--other-user", required=True)
    ap.add_argument("--other-password", required=True)
    ap.add_argument("--seconds", type=float, default=10)
    a = ap.parse_args()
    shared, stop = Shared(), threading.Event()
    threads = [
        threading.Thread(target=writer, args=(a, a.user, a.password, shared, True, stop)),
        threading.Thread(target=writer, args=(a, a.other_user, a.other_password, shared, False, stop)),
        threading.Thread(target=reader, args=(a, shared, stop)),
        threading.Thread(target=reader, args=(a, shared, stop)),
    ]
    for t in threads:
        t.start()
    time.sleep(a.seconds)
    stop.set()
    for t in threads:
        t.join()
    print(
        json.dumps(
            {
                "fetched": shared.fetched,
                "expunged": shared.expunged,
                "serverbug": shared.serverbug,
                "mismatched": shared.mismatched,
                "errors": len(shared.errors),
                "first_errors": shared.errors[:5],
            }
        )
    )


if __name__ == "__main__":
    sys.exit(main())
