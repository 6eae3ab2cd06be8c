"""Run moto's server on 127.0.0.1 and a free port; exit when stdin reaches EOF.

moto prints `Running on http://127.0.0.1:PORT` on stderr. Watching stdin lets the
caller tie moto's life to its own: when the caller's end of the pipe closes (normal
exit, error or kill -9), moto exits too. The same launcher as tests/support/mod.rs.
"""
import os
import sys
import threading


def _watch_stdin():
    try:
        sys.stdin.read()
    finally:
        os._exit(0)


threading.Thread(target=_watch_stdin, daemon=True).start()

from moto.server import main  # noqa: E402  (after the watcher is up)

main(["-H", "127.0.0.1", "-p", "0"])
