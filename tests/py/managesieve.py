"""A minimal ManageSieve client (RFC 5804) over STARTTLS: logs in and runs the commands
given, printing one JSON line with each command's response. Used where sieve-connect has
no command (RENAMESCRIPT) and to read exact responses."""
import argparse, base64, json, socket, ssl

def response(f):
    lines = []
    while True:
        line = f.readline()
        if not line:
            raise SystemExit("connection closed")
        text = line.decode("utf-8", "replace")
        lines.append(text)
        if text.rstrip().endswith("}") and text.startswith("{"):
            n = int(text.strip()[1:-1])
            lines.append(f.read(n).decode("utf-8", "replace"))
            continue
        if text.startswith(("OK", "NO", "BYE")):
            return "".join(lines)

def main():
    p = argparse.ArgumentParser()
    p.add_argument("--server"); p.add_argument("--ca"); p.add_argument("--user"); p.add_argument("--password")
    p.add_argument("commands", nargs="*")
    a = p.parse_args()
    host, port = a.server.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=30)
    f = sock.makefile("rb")
    out = {"greeting": response(f)}
    sock.sendall(b"STARTTLS\r\n")
    out["starttls"] = response(f)
    ctx = ssl.create_default_context(cafile=a.ca)
    tls = ctx.wrap_socket(sock, server_hostname=host)
    f = tls.makefile("rb")
    out["capabilities"] = response(f)
    plain = base64.b64encode(b"\0" + a.user.encode() + b"\0" + a.password.encode()).decode()
    tls.sendall(f'AUTHENTICATE "PLAIN" "{plain}"\r\n'.encode())
    out["login"] = response(f)
    out["responses"] = []
    for c in a.commands:
        tls.sendall(c.encode().replace(b"\\r\\n", b"\r\n") + b"\r\n")
        out["responses"].append(response(f))
    print(json.dumps(out))

main()
