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

# moto drops the login profile when UpdateLoginProfile omits Password; AWS keeps the
# password and changes only what is given (e.g. PasswordResetRequired). Behave like AWS.
from moto.iam import models as _iam_models
_update_login_profile = _iam_models.IAMBackend.update_login_profile
def _keep_password(self, user_name, password, password_reset_required):
    user = self.get_user(user_name)
    if password is None:
        password = user.password
    if password_reset_required is None:
        password_reset_required = user.password_reset_required
    return _update_login_profile(self, user_name, password, password_reset_required)
_iam_models.IAMBackend.update_login_profile = _keep_password

from moto.server import main  # noqa: E402  (after the watcher is up)

main(["-H", "127.0.0.1", "-p", "0"])
