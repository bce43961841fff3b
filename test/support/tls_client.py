#!/usr/bin/env python3
"""A TLS client for the integration tests (Python's ssl module, a second
TLS stack next to OpenSSL's s_client and curl). One line of key=value
pairs per connection on stdout; the test parses them.

  tls_client.py get HOST PORT SNI CAFILE PATH N [BODY_BYTES]
      one connection, N keep-alive requests (POST with BODY_BYTES when
      given); prints version, sni, serial, then status/trace/len per request
  tls_client.py resume HOST PORT SNI CAFILE
      two connections, the second offering the first one's session;
      prints reused=True|False and both versions
  tls_client.py hold HOST PORT SNI CAFILE PATH [PATH2]
      one request, then waits for a line on stdin, then a second request
      (to PATH2 when given) on the same connection (a connection kept
      across a reload)
  tls_client.py plain HOST PORT
      plain HTTP sent to the TLS port; prints what came back (bytes)
  tls_client.py pinned HOST PORT SNI CAFILE MIN MAX
      one handshake with the protocol versions pinned to MIN..MAX (1.0,
      1.1, 1.2, 1.3), verified against CAFILE; prints offered=MIN..MAX
      and version=, or error=. Below 1.2 the ciphers go to security level
      0: Debian's OpenSSL 3 otherwise leaves TLS 1.0 and 1.1 out of the
      ClientHello, and the test would prove nothing about the server.
"""
import socket
import ssl
import sys
import warnings

_VERSIONS = {"1.0": "TLSv1", "1.1": "TLSv1_1", "1.2": "TLSv1_2", "1.3": "TLSv1_3"}


_contexts = {}


def connect(host, port, sni, cafile, session=None):
    # One context per trust anchor: a session is only offered again on the
    # context that made it.
    ctx = _contexts.get(cafile)
    if ctx is None:
        ctx = _contexts[cafile] = ssl.create_default_context(cafile=cafile)
        ctx.set_alpn_protocols(["http/1.1"])
    raw = socket.create_connection((host, int(port)), timeout=10)
    s = ctx.wrap_socket(raw, server_hostname=sni, session=session)
    return s


def read_response(s, buf):
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        if not d:
            raise EOFError("closed in the head")
        buf += d
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    hdrs = {}
    for ln in lines[1:]:
        k, v = ln.split(":", 1)
        hdrs[k.strip().lower()] = v.strip()
    n = int(hdrs.get("content-length", "0"))
    while len(rest) < n:
        d = s.recv(65536)
        if not d:
            raise EOFError("closed in the body")
        rest += d
    return status, hdrs, rest[:n], rest[n:]


def request(s, host, path, body=None):
    if body is None:
        s.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (path, host)).encode())
    else:
        s.sendall(("POST %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n" % (path, host, len(body))).encode()
                  + body)


def main():
    cmd = sys.argv[1]
    if cmd == "get":
        host, port, sni, cafile, path, n = sys.argv[2:8]
        body = b"x" * int(sys.argv[8]) if len(sys.argv) > 8 else None
        s = connect(host, port, sni, cafile)
        cert = s.getpeercert()
        out = ["version=%s" % s.version(), "alpn=%s" % s.selected_alpn_protocol(),
               "serial=%s" % cert.get("serialNumber", "")]
        buf = b""
        for i in range(int(n)):
            request(s, sni, path, body)
            st, h, b, buf = read_response(s, buf)
            out.append("status%d=%d trace%d=%s len%d=%d" % (i, st, i, h.get("x-trace-id", ""), i, len(b)))
        print(" ".join(out))
        s.close()
    elif cmd == "resume":
        host, port, sni, cafile = sys.argv[2:6]
        s1 = connect(host, port, sni, cafile)
        request(s1, sni, "/")
        read_response(s1, b"")  # TLS 1.3 tickets come after the handshake: read first
        sess = s1.session
        s1.close()
        s2 = connect(host, port, sni, cafile, session=sess)
        request(s2, sni, "/")
        st, _, _, _ = read_response(s2, b"")
        print("reused=%s status=%d v1=%s v2=%s" % (s2.session_reused, st, s1.version(), s2.version()))
        s2.close()
    elif cmd == "hold":
        host, port, sni, cafile, path = sys.argv[2:7]
        path2 = sys.argv[7] if len(sys.argv) > 7 else path
        s = connect(host, port, sni, cafile)
        serial = s.getpeercert().get("serialNumber", "")
        request(s, sni, path)
        st1, _, _, buf = read_response(s, b"")
        print("serial=%s first=%d" % (serial, st1), flush=True)
        sys.stdin.readline()
        request(s, sni, path2)
        st2, _, _, _ = read_response(s, buf)
        print("second=%d" % st2, flush=True)
        s.close()
    elif cmd == "pinned":
        host, port, sni, cafile, lo, hi = sys.argv[2:8]
        warnings.simplefilter("ignore", DeprecationWarning)  # TLSVersion.TLSv1_1 is the point here
        ctx = ssl.create_default_context(cafile=cafile)
        ctx.minimum_version = getattr(ssl.TLSVersion, _VERSIONS[lo])
        ctx.maximum_version = getattr(ssl.TLSVersion, _VERSIONS[hi])
        if lo in ("1.0", "1.1"):
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        print("offered=%s..%s" % (lo, hi), end=" ", flush=True)
        raw = socket.create_connection((host, int(port)), timeout=10)
        s = ctx.wrap_socket(raw, server_hostname=sni)
        print("version=%s" % s.version())
        s.close()
    elif cmd == "plain":
        host, port = sys.argv[2:4]
        raw = socket.create_connection((host, int(port)), timeout=10)
        raw.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        got = b""
        try:
            while True:
                d = raw.recv(4096)
                if not d:
                    break
                got += d
        except (ConnectionResetError, socket.timeout):
            pass
        print("bytes=%d http=%s" % (len(got), got.startswith(b"HTTP/")))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (ssl.SSLError, OSError, EOFError) as e:
        print("error=%s" % type(e).__name__, str(e).replace(" ", "_"))
        sys.exit(1)
