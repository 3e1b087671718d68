#!/usr/bin/python3
"""A DNS server on loopback for the tests (dnslib, Debian's python3-dnslib): answers TXT
queries for the names given, NXDOMAIN for anything else. Prints {"port": N} once it
listens, then serves until killed.

  dns_txt.py NAME TEXT [NAME TEXT ...]   (TEXT is split into strings of 255 bytes)
"""
import json
import sys
import time

from dnslib import QTYPE, RR, TXT
from dnslib.server import BaseResolver, DNSLogger, DNSServer


class Records(BaseResolver):
    def __init__(self, records):
        self.records = records

    def resolve(self, request, handler):
        reply = request.reply()
        name = str(request.q.qname).lower().rstrip(".")
        text = self.records.get(name)
        if text is None:
            reply.header.rcode = 3
        elif request.q.qtype == QTYPE.TXT:
            chunks = [text[i:i + 255] for i in range(0, len(text), 255)]
            reply.add_answer(RR(request.q.qname, QTYPE.TXT, rdata=TXT(chunks), ttl=60))
        return reply


def main():
    args = sys.argv[1:]
    records = {args[i].lower().rstrip("."): args[i + 1] for i in range(0, len(args), 2)}
    # Quiet: the test reads the port line and then closes our standard output.
    quiet = DNSLogger("-request,-reply,-truncated,-error,-recv,-send,-data,-log_error")
    server = DNSServer(Records(records), port=0, address="127.0.0.1", logger=quiet)
    server.start_thread()
    print(json.dumps({"port": server.server.server_address[1]}), flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
