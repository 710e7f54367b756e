"""The shared tracking server behind MLflow's basic-auth app (deploy/mlflow_basic_auth.ini, as
`make tracking-server` runs it): a real server on a free loopback port. Its users log every
trial; a wrong or missing password stops a sweep in one line before anything is written; a
client without a password cannot write; no password reaches a file, a log or a run.

`pytest -m "slow or not slow" -k basic_auth` runs them and tests/test_credentials.py; the two
sweeps are slow (`make test-e2e` runs them).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from mlflow.server import get_app_client

from ripu.cli import main as ripu_main
from ripu.config import apply_overrides, dump_yaml
from ripu.credentials import PASSWORD_ENV, USER_ENV
from ripu.errors import RipuError
from ripu.sweep import run_sweep
from ripu.sweep.session import tracking_server
from ripu.tracking import Tracker, check_uri, serve
from tests.test_sweep import (
    RecordLogs,
    _pickle_this_module_by_value,
    assert_every_metric_once,
    children_of,
    logging_steps,
    ray_cluster,
    tiny_setup,
    write_experiment,
)

pytestmark = pytest.mark.integration  # real MLflow servers, Ray, DVC

REPO = Path(__file__).resolve().parents[1]
ADMIN, USER = "admin", "alice"
# fresh each session, so that finding one anywhere can only be a leak
BOOTSTRAP, ADMIN_PASSWORD, PASSWORD = (f"pw-{secrets.token_hex(12)}" for _ in range(3))
SECRETS = (BOOTSTRAP, ADMIN_PASSWORD, PASSWORD)


@contextlib.contextmanager
def as_user(user: str | None, password: str | None = None):
    """This process's MLflow user for the block (none: ``user`` None); restored after."""
    saved = {k: os.environ.pop(k, None) for k in (USER_ENV, PASSWORD_ENV)}
    if user is not None:
        os.environ.update({USER_ENV: user, PASSWORD_ENV: password})
    try:
        yield
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None)
            if value is not None:
                os.environ[key] = value


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    """The recipe: a basic-auth server whose admin is created with a bootstrap password at
    first start, which set-up then replaces (update-password), and one user, alice.
    Yields ``(url, folder)``: the server's store, artifacts, user database and log."""
    folder = tmp_path_factory.mktemp("auth-server")
    env = {"MLFLOW_AUTH_CONFIG_PATH": str(REPO / "deploy" / "mlflow_basic_auth.ini"),
           "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(32),
           "MLFLOW_AUTH_ADMIN_PASSWORD": BOOTSTRAP}
    with serve(f"sqlite:///{folder / 'mlflow.db'}", folder / "artifacts", app_name="basic-auth",
               env=env, cwd=folder) as url:
        users = get_app_client("basic-auth", tracking_uri=url)  # MLflow's own admin client
        with as_user(ADMIN, BOOTSTRAP):
            users.update_user_password(ADMIN, ADMIN_PASSWORD, current_password=BOOTSTRAP)
        with as_user(ADMIN, ADMIN_PASSWORD):
            users.create_user(USER, PASSWORD)
        yield url, folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_setup(tmp_path_factory.mktemp("auth"))


def _status(url: str, path: str, user: str | None = None, password: str | None = None,
            body: bytes | None = None) -> int:
    """The HTTP status of one request, with basic auth when ``user`` is given."""
    import base64

    request = urllib.request.Request(url + path, data=body, method="POST" if body else "GET",
                                     headers={"Content-Type": "application/json"})
    if user is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status
    except urllib.error.HTTPError as err:
        return err.code


def _experiments(url: str) -> set[str]:
    """Every experiment's name, as the admin sees them."""
    from mlflow.tracking import MlflowClient

    with as_user(ADMIN, ADMIN_PASSWORD):
        return {e.name for e in MlflowClient(url).search_experiments()}


def assert_no_password(*where: Path | str) -> None:
    """No password of this session in any file under the folders, nor in the texts."""
    for item in where:
        if isinstance(item, Path):
            files = [item] if item.is_file() else [p for p in item.rglob("*") if p.is_file()]
            assert files, f"nothing to search in {item}"
            for path in files:
                data = path.read_bytes()
                assert not any(s.encode() in data for s in SECRETS), f"a password in {path}"
        else:
            assert not any(s in item for s in SECRETS), "a password in the output"


def test_basic_auth_the_admin_password_is_replaced_at_set_up(auth_server):
    url, _ = auth_server
    search = "/api/2.0/mlflow/experiments/search?max_results=1"
    assert _status(url, search, ADMIN, BOOTSTRAP) == 401  # the first start's password is gone
    assert _status(url, search, ADMIN, ADMIN_PASSWORD) == 200
    assert _status(url, search, USER, PASSWORD) == 200
    assert _status(url, "/health") == 200  # for load balancers: says nothing about runs


def test_basic_auth_unauthenticated_client_cannot_write(auth_server, tmp_path, monkeypatch):
    url, _ = auth_server
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.mlflow/credentials either
    body = b'{"name": "intruder"}'
    assert _status(url, "/api/2.0/mlflow/experiments/create", body=body) == 401
    assert _status(url, "/api/2.0/mlflow/experiments/create", USER, "not-" + PASSWORD,
                   body=body) == 401
    assert _status(url, "/api/2.0/mlflow/experiments/search?max_results=1") == 401
    with as_user(None):
        with pytest.raises(RipuError, match=r"requires a user name and password \(401\)"):
            Tracker(url, "intruder")
        with pytest.raises(RipuError, match=r"requires a user name and password \(401\)"):
            check_uri(url)
    assert "intruder" not in _experiments(url)


def write_credentials(path: Path, password: str, mode: int = 0o600) -> Path:
    """alice's credentials file (MLflow's format) with ``password``."""
    path.write_text(f"[mlflow]\n{USER_ENV.lower()} = {USER}\n{PASSWORD_ENV.lower()} = "
                    f"{password}\n")
    path.chmod(mode)
    return path


def _sweep_cli(tmp_path: Path, cfg, init: Path, name: str) -> tuple[list[str], Path]:
    """The arguments of `ripu sweep` for a one-trial experiment ``name``, its params file in
    ``tmp_path``; and its trial-folder root."""
    params = tmp_path / "params.yaml"
    params.write_text(dump_yaml(cfg))
    exp = write_experiment(tmp_path / f"{name}.yaml", name,
                           [{"train.kind": ["source_only"], "seed": [0]}])
    return (["sweep", "--params", str(params), "--experiment", str(exp), "--init", str(init),
             "--out", str(tmp_path / "runs"), "-q"], tmp_path / "runs")


@pytest.mark.parametrize("how", ["wrong password", "no credentials", "wrong password file",
                                 "file others may read"])
def test_basic_auth_refused_sweep_stops_in_one_line_writing_nothing(
        how, auth_server, tiny, tmp_path, monkeypatch, capsys):
    url, _ = auth_server
    _, cfg, init = tiny
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.mlflow/credentials
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    overrides = {"tracking.uri": url}
    if how.endswith(("file", "read")):
        creds = write_credentials(tmp_path / "creds.ini", "not-" + PASSWORD,
                                  0o600 if how.endswith("file") else 0o644)
        overrides["tracking.credentials"] = str(creds)
    name = "refused-" + how.replace(" ", "-")
    args, runs = _sweep_cli(tmp_path, apply_overrides(cfg, overrides), init, name)
    with as_user(USER if how == "wrong password" else None, "not-" + PASSWORD):
        status = ripu_main(args)
    out, err = capsys.readouterr()
    assert status == 2
    (line,) = err.splitlines()
    expected = {"wrong password": f"refused user '{USER}' (401: wrong user name or password)",
                "no credentials": "requires a user name and password (401)",
                "wrong password file": f"refused user '{USER}' (401",
                "file others may read": "other users may read it (mode 644); expected it "
                                        "private to its owner: chmod 600"}[how]
    assert line.startswith("ripu: error: ") and expected in line, line
    assert_no_password(out, err)
    assert "sweep " not in out  # the sweep never began
    assert not runs.exists() and name not in _experiments(url)  # nothing written, anywhere


def test_basic_auth_user_without_permission_is_refused_in_one_line(auth_server, tiny, tmp_path,
                                                                   monkeypatch, capsys):
    """alice may not use an experiment the admin guards (DENY; a lesser grant never falls
    below the config's default, EDIT): her sweep into it stops in one line (403), before Ray
    starts, writing nothing."""
    from mlflow.tracking import MlflowClient

    url, _ = auth_server
    _, cfg, init = tiny
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with as_user(ADMIN, ADMIN_PASSWORD):
        exp_id = MlflowClient(url).create_experiment("guarded")
        get_app_client("basic-auth", tracking_uri=url).grant_user_permission(
            USER, "experiment", exp_id, "DENY")
    args, runs = _sweep_cli(tmp_path, apply_overrides(cfg, {"tracking.uri": url}), init,
                            "guarded")
    with as_user(USER, PASSWORD):
        status = ripu_main(args)
    out, err = capsys.readouterr()
    assert status == 2
    (line,) = err.splitlines()
    assert line.startswith(f"ripu: error: tracking.uri: {url} denied user '{USER}' this "
                           f"request (403 permission denied)"), line
    assert "sweep " not in out and not runs.exists()
    with as_user(ADMIN, ADMIN_PASSWORD):
        assert MlflowClient(url).search_runs([exp_id]) == []


@pytest.mark.slow  # 2 to 3 min on a shared 2-core machine; `make test-e2e` runs it
def test_basic_auth_sweep_logs_every_trial_and_keeps_passwords_out(auth_server, tiny, tmp_path,
                                                                   ray_tmp, monkeypatch, capfd):
    """alice's password from the credentials file her params name (tracking.credentials):
    every trial logs everything through the server;
    neither the store, the artifacts, the runs' params and tags, the trial folders, Ray's
    files and logs nor the output hold a password (the server's folder: its store, user
    database, artifacts and log)."""
    url, server = auth_server
    _, cfg, init = tiny
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    _pickle_this_module_by_value("tests.test_sweep")
    creds = write_credentials(tmp_path / "alice.ini", PASSWORD)
    cfg = apply_overrides(cfg, {"tracking.uri": url, "tracking.credentials": str(creds)})
    exp_file = write_experiment(tmp_path / "shared.yaml", "shared", [
        {"train.kind": ["source_only"], "seed": [0]},
        {"train.kind": ["active"], "active.strategy": ["ripu_region"], "seed": [0]}])
    with as_user(None):  # none in the environment: the file's are used
        results = run_sweep(cfg, exp_file, init=init, out_dir=tmp_path / "runs",
                            progress=False, storage=tmp_path / "ray_results",
                            callbacks=[RecordLogs()])
        parents, children = children_of(url, "shared")
        assert [r["status"] for r in results] == ["finished", "finished"]
        assert [p.info.status for p in parents] == ["FINISHED"]
        by_trial = {c.data.tags["ripu.trial"]: c for c in children}
        assert sorted(by_trial) == sorted(r["trial"] for r in results)
        for r in results:
            run = by_trial[r["trial"]]
            assert run.info.status == "FINISHED"
            assert_every_metric_once(url, run.info.run_id, Path(r["dir"]),
                                     logging_steps(cfg, r["kind"]))
    for run in [*parents, *children]:  # the user's name may be logged, the password never
        assert_no_password(*run.data.params.values(), *run.data.tags.values())
    output = capfd.readouterr()
    assert_no_password(output.out, output.err)
    assert_no_password(server, tmp_path / "runs", tmp_path / "ray_results", ray_tmp)


@pytest.fixture
def ray_tmp(monkeypatch):
    """Ray's own folder (sessions, logs) for this test: short, under /tmp (socket paths)."""
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="ripu-ra-", dir="/tmp"))
    monkeypatch.setenv("RAY_TMPDIR", str(folder))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_basic_auth_sqlite_sweep_server_listens_on_loopback_only(tmp_path):
    """The sweep's own server over a SQLite store answers on 127.0.0.1 and nowhere else."""
    import socket

    with tracking_server(f"sqlite:///{tmp_path / 'mlflow.db'}") as url:
        host, port = url.removeprefix("http://").split(":")
        assert host == "127.0.0.1"
        check_uri(url)
        others = {a[4][0] for a in socket.getaddrinfo(socket.gethostname(), None,
                                                      socket.AF_INET)} - {"127.0.0.1"}
        others |= {_outward_address()} - {None, "127.0.0.1"}
        for address in others:
            with socket.socket() as s:
                s.settimeout(2)
                assert s.connect_ex((address, int(port))) != 0, address


def _outward_address() -> str | None:
    """This machine's address on its default route (no packet is sent), if any."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))
            return s.getsockname()[0]
        except OSError:
            return None


@pytest.mark.slow
def test_basic_auth_dvc_repro_on_a_cluster_node_that_never_saw_the_password(
        auth_server, tiny, tmp_path, monkeypatch):
    """`dvc repro` of a sweep stage, alice's password in the driver's environment only, on a
    `ray start` node started without it: the trial gets it from the driver and logs to the
    server; dvc.lock, runs/, the logs and the server's files hold no password."""
    url, server = auth_server
    _, cfg, init = tiny
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    project = tmp_path / "project"
    project.mkdir()
    exp = write_experiment(project / "e.yaml", "dvcauth",
                           [{"train.kind": ["source_only"], "seed": [0]}])
    (project / "params.yaml").write_text(dump_yaml(apply_overrides(cfg, {
        "tracking.uri": url, "tracking.experiment": "dvcauth", "sweep.experiment": str(exp)})))
    (project / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"sweep": {
        "cmd": f"{sys.executable} -m ripu sweep --init {init} --out runs -q",
        "deps": [str(init), "e.yaml"], "params": ["tracking", "sweep"],
        "outs": [{"runs/dvcauth": {"persist": True}}]}}}))
    env = {k: v for k, v in os.environ.items() if k not in (USER_ENV, PASSWORD_ENV)}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    dvc = str(Path(sys.executable).with_name("dvc"))
    subprocess.run([dvc, "init", "--no-scm", "-q"], cwd=project, env=env, check=True)
    with as_user(None), ray_cluster(workers=0) as (address, _, _):
        env.update({"RAY_ADDRESS": address, USER_ENV: USER, PASSWORD_ENV: PASSWORD})
        env.pop("RAY_AUTH_MODE", None)
        done = subprocess.run([dvc, "repro"], cwd=project, env=env, capture_output=True,
                              text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert url in (project / "dvc.lock").read_text()  # the tracking params are recorded
    with as_user(USER, PASSWORD):
        parents, (child,) = children_of(url, "dvcauth")
    assert [p.info.status for p in parents] == ["FINISHED"] and child.info.status == "FINISHED"
    assert "final/miou" in child.data.metrics
    assert_no_password(done.stdout, done.stderr, *child.data.params.values(),
                       *child.data.tags.values())
    assert_no_password(server, project / "dvc.lock", project / "runs")
