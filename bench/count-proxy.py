#!/usr/bin/env python3
"""A counting HTTP proxy for the benchmarks: forwards every request to an upstream AWS
emulator unchanged and counts them by API operation (Query-protocol `Action`, or the
JSON protocol's `X-Amz-Target`).

    count-proxy.py --upstream http://127.0.0.1:PORT

Prints `Listening on http://127.0.0.1:PORT` on stdout, then serves until stdin reaches EOF.
`GET /__counts` answers the counts as JSON, `POST /__reset` clears them; neither is
forwarded. Counts are HTTP requests, so a retried call counts once per attempt, like
iam-warden's own `aws_calls`.
"""

import argparse
import http.client
import json
import os
import sys
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade", "te"}


def operation(handler, body: bytes) -> str:
    target = handler.headers.get("X-Amz-Target")
    if target:
        return target.rsplit(".", 1)[-1]
    q = parse_qs(urlparse(handler.path).query)
    if "Action" in q:
        return q["Action"][0]
    ctype = handler.headers.get("Content-Type", "")
    if body and "x-www-form-urlencoded" in ctype:
        form = parse_qs(body.decode("utf-8", "replace"))
        if "Action" in form:
            return form["Action"][0]
    return f"{handler.command} {urlparse(handler.path).path}"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", required=True)
    a = ap.parse_args()
    up = urlparse(a.upstream)
    counts: Counter = Counter()
    lock = threading.Lock()
    local = threading.local()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        def reply(self, code: int, body: bytes, headers=()):
            self.send_response(code)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def handle_any(self):
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n) if n else b""
            if self.path == "/__counts":
                with lock:
                    data = json.dumps(dict(sorted(counts.items()))).encode()
                return self.reply(200, data, [("Content-Type", "application/json")])
            if self.path == "/__reset":
                with lock:
                    counts.clear()
                return self.reply(204, b"")
            with lock:
                counts[operation(self, body)] += 1
            conn = getattr(local, "conn", None)
            if conn is None:
                conn = local.conn = http.client.HTTPConnection(up.hostname, up.port, timeout=300)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
            except (http.client.HTTPException, OSError):
                local.conn = None
                return self.reply(502, b"count-proxy: upstream failed")
            hdrs = [(k, v) for k, v in resp.getheaders() if k.lower() not in HOP | {"content-length"}]
            self.reply(resp.status, data, hdrs)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = handle_any

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    print(f"Listening on http://127.0.0.1:{srv.server_address[1]}", flush=True)

    def watch():
        sys.stdin.read()
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()
    srv.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
