"""A tiny receiver for iam-warden's owner notifications (the demo's webhook).

    webhook-receiver.py --key-file FILE

Listens on 127.0.0.1 and a free port, prints `http://127.0.0.1:PORT/notices` on stdout,
then one line per request: for a notice whose `X-Iam-Warden-Signature` is valid (sha256=
hex HMAC-SHA256 of the raw body, keyed with the content of FILE without surrounding
whitespace, as iam-warden reads it) its event, user and key id, answered 204; anything
else is answered 401 or 400 and printed as rejected. Exits when stdin reaches EOF, so the
caller ties its life to its own (like scripts/moto-server.py). Standard library only.
"""
import argparse
import hashlib
import hmac
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PREFIX = "sha256="


def _watch_stdin() -> None:
    try:
        sys.stdin.read()
    finally:
        os._exit(0)


def say(line: str) -> None:
    print(line, flush=True)


def verify(key: bytes, body: bytes, header: str | None) -> bool:
    """The header is `sha256=<hex HMAC-SHA256 of the exact body>`; compared in constant time."""
    if not header or not header.startswith(PREFIX):
        return False
    expected = hmac.new(key, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header[len(PREFIX):].strip().lower())


def handler(key: bytes):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            try:
                n = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                n = -1
            if n < 0 or n > 1 << 20:
                self.answer(400, "rejected: missing or oversized Content-Length")
                return
            body = self.rfile.read(n)
            # Verify over the raw body, before parsing it.
            if not verify(key, body, self.headers.get("X-Iam-Warden-Signature")):
                self.answer(401, "rejected: missing or wrong X-Iam-Warden-Signature")
                return
            try:
                notice = json.loads(body)
                fields = (notice["event"], notice["user"], notice.get("access_key_id"))
            except (ValueError, KeyError, TypeError) as e:
                self.answer(400, f"rejected: a signed body that is not a notice ({e})")
                return
            event, user, key_id = fields
            self.answer(
                204,
                f"notice (signature ok): event={event} user={user} key={key_id or '-'}",
            )

        def answer(self, status: int, line: str) -> None:
            say(line)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args) -> None:  # quiet: one line per notice is printed above
            pass

    return Handler


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--key-file", required=True, help="the file iam-warden's webhook_secret_file names")
    a = ap.parse_args()
    try:
        with open(a.key_file, "rb") as f:
            key = f.read().strip()
    except OSError as e:
        print(f"webhook-receiver: error: cannot read the key file {a.key_file}: {e.strerror}", file=sys.stderr)
        return 2
    if not key:
        print(f"webhook-receiver: error: the key file {a.key_file} is empty: write a key into it", file=sys.stderr)
        return 2
    threading.Thread(target=_watch_stdin, daemon=True).start()
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler(key))
    say(f"http://127.0.0.1:{server.server_address[1]}/notices")
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
