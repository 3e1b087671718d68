"""One Python imaplib session: APPEND then STORE latencies in ms, one line:
APPEND_P50 APPEND_P99 STORE_P50 STORE_P99

imaplib writes an APPEND's literal and its final CRLF in two writes with Nagle on, the
pattern that exposed the delayed-ACK stall (issue 26). Used by append-bench.
usage: imaplib_latency.py HOST PORT USER PASSWORD COUNT MESSAGE_BYTES
"""
import imaplib
import statistics
import sys
import time

host, port, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
count, size = int(sys.argv[5]), int(sys.argv[6])
line = b"The quick brown fox jumps over the lazy dog, again and again.\r\n"
body = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: latency\r\n\r\n"
body += line * max(1, (size - len(body)) // len(line))
c = imaplib.IMAP4(host, port)
c.login(user, password)
c.create("Bench")
c.select("Bench")
appends, stores = [], []
for _ in range(count):
    t = time.perf_counter()
    typ, _ = c.append("Bench", None, None, body)
    appends.append(time.perf_counter() - t)
    if typ != "OK":
        sys.exit("APPEND failed")
typ, data = c.uid("SEARCH", None, "ALL")
uids = data[0].split()
for k in range(count):
    t = time.perf_counter()
    typ, _ = c.uid("STORE", uids[k % len(uids)], "+FLAGS", "(\\Seen)" if k % 2 == 0 else "(\\Flagged)")
    stores.append(time.perf_counter() - t)
    if typ != "OK":
        sys.exit("STORE failed")
c.delete("Bench") if c.select("INBOX")[0] == "OK" else None
c.logout()
ms = lambda xs, q: sorted(xs)[min(len(xs) - 1, int(len(xs) * q))] * 1000
print("%.3f %.3f %.3f %.3f" % (statistics.median(appends) * 1000, ms(appends, 0.99),
                              statistics.median(stores) * 1000, ms(stores, 0.99)))
