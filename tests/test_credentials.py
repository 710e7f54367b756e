"""Where a process's tracking-server user comes from (ripu.credentials), without a server:
the environment first, else the file tracking.credentials names; every refusal one line
that never holds the password. The server itself: tests/test_basic_auth.py."""

from __future__ import annotations

import os

import pytest

from ripu.config import TrackingConfig
from ripu.credentials import PASSWORD_ENV, USER_ENV, Credentials, read_file, use_credentials
from ripu.errors import RipuError

SECRET = "pw-not-to-be-seen-anywhere"  # noqa: S105 (a test value)
URL = "http://tracking.example:5000"


@pytest.fixture(autouse=True)
def no_user(monkeypatch):
    """Neither variable set; whatever a test sets (use_credentials too) is undone after."""
    for key in (USER_ENV, PASSWORD_ENV):
        monkeypatch.setenv(key, "")  # records the original, so that teardown restores it
        monkeypatch.delenv(key)


def _file(tmp_path, text: str, mode: int = 0o600):
    path = tmp_path / "creds.ini"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_basic_auth_credentials_environment_first_then_the_file(tmp_path, monkeypatch):
    path = _file(tmp_path, f"[mlflow]\nmlflow_tracking_username = bob\n"
                           f"mlflow_tracking_password = {SECRET}\n")
    tracking = TrackingConfig(uri=URL, credentials=str(path))
    found = use_credentials(tracking)
    assert (found.username, found.password) == ("bob", SECRET)
    assert (os.environ[USER_ENV], os.environ[PASSWORD_ENV]) == ("bob", SECRET)  # for MLflow
    assert SECRET not in repr(found) and SECRET not in str(found)
    monkeypatch.setenv(USER_ENV, "alice")
    monkeypatch.setenv(PASSWORD_ENV, "from-the-environment")
    assert use_credentials(tracking) == Credentials("alice", "from-the-environment")
    assert use_credentials(TrackingConfig(uri="sqlite:///mlflow.db",
                                          credentials="/no/such/file")) is None  # local store


@pytest.mark.parametrize("text, mode, message", [
    (f"[mlflow]\nmlflow_tracking_password = {SECRET}\n", 0o600,
     "no [mlflow] section with mlflow_tracking_username and mlflow_tracking_password"),
    (f"password = {SECRET}\n", 0o600, "expected MLflow's credentials-file format"),
    (f"[mlflow]\nmlflow_tracking_username = bob\nmlflow_tracking_password = {SECRET}\n", 0o640,
     "other users may read it (mode 640); expected it private to its owner: chmod 600"),
])
def test_basic_auth_credentials_bad_file_is_one_line_without_the_password(tmp_path, text, mode,
                                                                          message):
    path = _file(tmp_path, text, mode)
    with pytest.raises(RipuError) as info:
        read_file(path)
    assert message in str(info.value) and SECRET not in str(info.value)
    assert "\n" not in str(info.value)


def test_basic_auth_credentials_missing_file_or_half_a_pair(tmp_path, monkeypatch):
    with pytest.raises(RipuError, match=r"tracking.credentials .*none.ini: cannot read it"):
        use_credentials(TrackingConfig(uri=URL, credentials=str(tmp_path / "none.ini")))
    monkeypatch.setenv(PASSWORD_ENV, SECRET)
    with pytest.raises(RipuError) as info:
        use_credentials(TrackingConfig(uri=URL))
    assert str(info.value).startswith(f"${PASSWORD_ENV} is set but ${USER_ENV} is not")
    assert SECRET not in str(info.value)
