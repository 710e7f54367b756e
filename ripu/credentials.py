"""Who this process is to a shared MLflow server run with MLflow's basic-auth app.

The user name and password come from ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``
or, when those are unset, from the file ``tracking.credentials`` names (MLflow's own
credentials-file format, readable by its owner only). :func:`use_credentials` puts them where
MLflow's client reads them (this process's environment); :func:`check_login` refuses, in one
line, a server that does not accept them. A sweep hands them to its Ray trials as a
:class:`Credentials` object, never in params, tags, the config or a log line: its ``repr``
hides the password. Torch- and MLflow-free (MLflow is the :mod:`ripu.tracking` package's).
"""

from __future__ import annotations

import base64
import configparser
import dataclasses
import os
import stat
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from ripu.errors import RipuError

if TYPE_CHECKING:
    from ripu.config import TrackingConfig

USER_ENV, PASSWORD_ENV = "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"  # noqa: S105
SECTION = "mlflow"  # MLflow's ~/.mlflow/credentials: [mlflow] with the variables' lower-case names
WHERE = (f"${USER_ENV} and ${PASSWORD_ENV}, or tracking.credentials naming a file "
         f"(chmod 600) with [{SECTION}] {USER_ENV.lower()} = ... and {PASSWORD_ENV.lower()} = ...")


@dataclasses.dataclass(frozen=True, repr=False)
class Credentials:
    """A basic-auth user of the tracking server."""

    username: str
    password: str

    def __repr__(self) -> str:  # never shows the password
        return f"Credentials({self.username!r}, password=<hidden>)"

    def apply(self) -> None:
        """Make them this process's: MLflow's client reads them from the environment."""
        os.environ[USER_ENV], os.environ[PASSWORD_ENV] = self.username, self.password

    @classmethod
    def from_env(cls) -> Credentials | None:
        """The environment's pair, None when neither is set; RipuError for half a pair."""
        user, password = os.environ.get(USER_ENV, ""), os.environ.get(PASSWORD_ENV, "")
        if bool(user) != bool(password):
            have, lack = (USER_ENV, PASSWORD_ENV) if user else (PASSWORD_ENV, USER_ENV)
            raise RipuError(f"${have} is set but ${lack} is not; expected both, or neither "
                            f"and tracking.credentials naming a file")
        return cls(user, password) if user else None


def read_file(path: str | Path) -> Credentials:
    """The user and password of a credentials file; RipuError (one line, never the password)
    when it is missing, readable by other users, or lacks either key."""
    path = Path(path).expanduser()
    name = f"tracking.credentials {path}"
    try:
        mode = path.stat().st_mode
        text = path.read_text()
    except OSError as err:
        raise RipuError(f"{name}: cannot read it ({err.strerror}); expected a file with "
                        f"[{SECTION}] {USER_ENV.lower()} and {PASSWORD_ENV.lower()}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise RipuError(f"{name}: other users may read it (mode {stat.S_IMODE(mode):o}); "
                        f"expected it private to its owner: chmod 600 {path}")
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text)
    except configparser.Error:
        parser.clear()
    section = parser[SECTION] if parser.has_section(SECTION) else {}
    user, password = (section.get(k.lower(), "").strip() for k in (USER_ENV, PASSWORD_ENV))
    if not user or not password:
        raise RipuError(f"{name}: no [{SECTION}] section with {USER_ENV.lower()} and "
                        f"{PASSWORD_ENV.lower()}; expected MLflow's credentials-file format")
    return Credentials(user, password)


def use_credentials(tracking: TrackingConfig, uri: str | None = None) -> Credentials | None:
    """The credentials this process logs to ``uri`` (default ``tracking.uri``) with: the
    environment's, else ``tracking.credentials``'s (then put in the environment). None for a
    local store, or a server URI without either (MLflow may still find ~/.mlflow/credentials)."""
    if not (uri or tracking.uri).startswith(("http://", "https://")):
        return None
    found = Credentials.from_env()
    if found is None and tracking.credentials:
        found = read_file(tracking.credentials)
        found.apply()
    return found


def check_login(uri: str, username: str | None, password: str | None,
                timeout: float = 5.0) -> None:
    """RipuError (one line, never the password) when the server at ``uri`` refuses this
    user (``username`` None: no user); a server without authentication accepts any."""
    request = urllib.request.Request(  # noqa: S310 - the user's tracking URI
        uri.rstrip("/") + "/api/2.0/mlflow/experiments/search?max_results=1")
    if username and password:
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        urllib.request.urlopen(request, timeout=timeout).close()  # noqa: S310
    except urllib.error.HTTPError as err:
        if err.code not in (401, 403):
            raise RipuError(f"tracking.uri: {uri} answered {err.code} to a search of its "
                            f"experiments, expected a running MLflow server") from None
        raise RipuError(refusal(uri, err.code, username)) from None
    except (urllib.error.URLError, OSError) as err:
        raise RipuError(f"tracking.uri: cannot reach {uri} ({getattr(err, 'reason', err)}), "
                        f"expected a running MLflow server") from None


def refusal(uri: str, status: int, username: str | None) -> str:
    """The one line for a server that answered 401 (who?) or 403 (not allowed)."""
    if status == 403:
        return (f"tracking.uri: {uri} denied user {username!r} this request (403 permission "
                f"denied); expected EDIT permission on the experiment (ask the server's admin)")
    if not username:
        return (f"tracking.uri: {uri} requires a user name and password (401); expected "
                f"{WHERE}")
    return (f"tracking.uri: {uri} refused user {username!r} (401: wrong user name or "
            f"password); expected the password the server's admin set for {username!r} in "
            f"{WHERE}")
