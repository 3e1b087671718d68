#!/usr/bin/env python3
"""Concurrent LMTP delivery client for the storaged cluster tests, using Python's own
smtplib.LMTP (an independent client implementation).

Delivers messages `first..first+count` (message i goes to user i % users) with `threads`
workers. A worker keeps one connection; on a 4xx it follows the "leader is HOST:PORT" hint
(or tries the next server) and retries the same message until it gets 250, within a
deadline. Prints "progress N" lines and finally one JSON object with the acknowledged
Message-IDs per user.
"""
import argparse, hmac, json, re, smtplib, sys, threading, time

LEADER = re.compile(rb"leader is ([0-9.]+):([0-9]+)")

def message(i, size):
    body = ("line %d of message %d\r\n" % (0, i)) * 1
    pad = max(0, size - 200)
    return ("From: load@test\r\nTo: user\r\nSubject: message %d\r\nMessage-ID: <msg-%d@load.test>\r\n\r\n" % (i, i)
            + body + ("x" * 76 + "\r\n") * (pad // 78)).encode()

class Worker:
    def __init__(self, servers, key):
        self.servers = servers
        self.key = key
        self.current = 0
        self.conn = None

    def connect(self, addr=None):
        self.close()
        if addr is not None:
            host, port = addr
        else:
            host, port = self.servers[self.current % len(self.servers)]
        self.conn = smtplib.LMTP(host, port, timeout=60)
        self.conn.ehlo("loadtest")
        # The storage node takes mail only from cluster members (AUTH X-MAILSTORE-CLUSTER):
        # the answer is HMAC-SHA256 of the derived LMTP key over the context and challenge.
        answer = lambda challenge=None: None if challenge is None else hmac.new(
            self.key, b"mailstore-lmtp-auth" + challenge, "sha256").hexdigest()
        self.conn.auth("X-MAILSTORE-CLUSTER", answer)

    def close(self):
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:
                pass
        self.conn = None

    def deliver(self, rcpt, data, deadline):
        """True when the server answered 250 for the recipient."""
        hint = None
        while time.time() < deadline:
            try:
                if self.conn is None:
                    target, hint = hint, None
                    self.connect(target)
                refused = self.conn.sendmail("load@test", [rcpt], data)
                if not refused:
                    return True
                code, msg = refused[rcpt]
                raise smtplib.SMTPRecipientsRefused({rcpt: (code, msg)})
            except smtplib.SMTPRecipientsRefused as e:
                code, msg = list(e.recipients.values())[0]
                if 500 <= code < 600:
                    print("permanent failure %s %s" % (code, msg), file=sys.stderr)
                    return False
                m = LEADER.search(msg)
                hint = (m.group(1).decode(), int(m.group(2))) if m else None
                if hint is None:
                    self.current += 1
                    time.sleep(0.2)
                self.close()
            except smtplib.SMTPDataError as e:
                if 500 <= e.smtp_code < 600:
                    print("permanent data failure %s" % e, file=sys.stderr)
                    return False
                m = LEADER.search(e.smtp_error)
                hint = (m.group(1).decode(), int(m.group(2))) if m else None
                self.current += 1
                self.close()
                time.sleep(0.1)
            except (OSError, smtplib.SMTPException):
                self.current += 1
                self.close()
                time.sleep(0.2)
        return False

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--servers", required=True, help="host:port,host:port,...")
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--count", type=int, default=5000)
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--deadline", type=float, default=600)
    ap.add_argument("--lmtp-key", required=True, help="the cluster's derived LMTP key, hex")
    args = ap.parse_args()
    servers = [(h, int(p)) for h, p in (s.rsplit(":", 1) for s in args.servers.split(","))]
    deadline = time.time() + args.deadline
    lock = threading.Lock()
    acked = {}
    failed = []
    done = [0]
    todo = list(range(args.first, args.first + args.count))

    def run(worker_no):
        w = Worker(servers, bytes.fromhex(args.lmtp_key))
        w.current = worker_no
        while True:
            with lock:
                if not todo:
                    break
                i = todo.pop()
            user = "user%d@example.edu" % (i % args.users)
            ok = w.deliver(user, message(i, args.size), deadline)
            with lock:
                if ok:
                    acked.setdefault(user, []).append("<msg-%d@load.test>" % i)
                else:
                    failed.append(i)
                done[0] += 1
                if done[0] % 250 == 0:
                    print("progress %d" % done[0], flush=True)
        w.close()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({"acked": acked, "failed": failed}), flush=True)

if __name__ == "__main__":
    main()
