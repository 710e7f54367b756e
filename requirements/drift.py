"""Drift check: would a fresh install today still work, and how would it differ from the locks?

Resolves the unlocked requirements afresh, each in a temporary venv, as a new user's
``pip install`` would (``pyproject.toml`` with the machine's torch pair; Label Studio's
``label-studio.in``), prints every package whose version would change against the lock, then
smoke-tests the fresh resolution: imports, ``ripu --help``, a tiny trial. Label Studio is
resolved twice: *without* the workaround caps of ``label-studio-caps.txt`` (does its server
start, so that the caps could go?) and with them, as ``make lock`` would; that server must
answer ``/health`` and serve a tiny people trial from push to pull, its rounds answered
through the API by the test suite's simulated annotator.

Exits 0 when every step passes, 1 with one line naming the first failing step (a server
without the caps that fails while caps are held is reported, not a failure). Run it as
``make drift`` (minutes: three venvs are installed; the pip cache makes later runs faster).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CAPS = HERE / "label-studio-caps.txt"  # workarounds the lock applies and the drift check drops
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", re.MULTILINE)
ANNOTATOR = REPO / "tests" / "annotate" / "annotator.py"  # the test suite's simulated annotator
WAITING_STATUS = 75  # ripu.annotate.people.WAITING_STATUS: a people trial waits for labels
# The tiny target's ground truth at the label state's size, for the annotator (ripu's venv).
TRUTH_SCRIPT = """
import sys
import numpy as np
from ripu.data import build_dataset
ds = build_dataset("cityscapes", sys.argv[1], split="train")
np.savez(sys.argv[2], ids=np.array(ds.ids), names=np.array(list(ds.class_names)),
         **{f"m{k}": ds[k]["label"].numpy().astype(np.uint8) for k in range(len(ds))})
"""
TINY_DATA = {"synth.source_images": 6, "synth.target_train": 6, "synth.target_val": 3,
             "synth.height": 32, "synth.width": 64}
TINY_TRIAL = {"data.source_size": "[64,32]", "data.target_size": "[64,32]",
              "data.eval_size": "[64,32]", "model.freeze_bn": "false", "optim.iters": 4,
              "optim.poly_iters": 4, "active.round_at": "[0.0,0.5]", "active.rounds": 2,
              "active.budget": 0.05, "active.batch_size": 4, "train.checkpoint_every": 2}


class StepFailed(Exception):
    """A step of the check failed; the message is the one line printed."""


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(text: str) -> dict[str, str]:
    """``{normalised name: version}`` of every ``name==version`` line (a lock or a freeze)."""
    return {normalise(n): v for n, v in PIN.findall(text)}


def changes(locked: dict[str, str], fresh: dict[str, str]) -> list[str]:
    """Lines ``name: locked -> fresh`` (``absent`` on either side), sorted by name."""
    return [f"{name}: {locked.get(name, 'absent')} -> {fresh.get(name, 'absent')}"
            for name in sorted(locked.keys() | fresh.keys())
            if locked.get(name) != fresh.get(name)]


def run(cmd: list[str], what: str, timeout: float = 1800, **kw) -> str:
    """Run ``cmd``; its stdout, or :class:`StepFailed` naming ``what`` and the last error line."""
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    except subprocess.TimeoutExpired:
        raise StepFailed(f"{what}: no answer in {timeout:.0f} s") from None
    if done.returncode != 0:
        tail = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
        raise StepFailed(f"{what}: exit {done.returncode}: {tail}")
    return done.stdout


def fresh_venv(path: Path, install: list[str], what: str) -> Path:
    """A new venv at ``path`` with ``pip install <install>``; its python."""
    run([sys.executable, "-m", "venv", str(path)], f"{what}: create venv")
    python = path / "bin" / "python"
    run([str(python), "-m", "pip", "install", "-q", *install], f"{what}: pip install")
    return python


def report_changes(python: Path, lock: Path, what: str, ignore: set[str]) -> None:
    freeze = run([str(python), "-m", "pip", "freeze", "--all"], f"{what}: pip freeze")
    fresh = {n: v for n, v in pins(freeze).items() if n not in ignore}
    lines = changes(pins(lock.read_text()), fresh)
    print(f"  {what}: {len(lines)} package(s) would change against {lock.relative_to(REPO)}")
    for line in lines:
        print(f"    {line}")


def ripu_smoke(python: Path, work: Path) -> None:
    bin_ = python.parent
    run([str(python), "-c", "import ripu, torch, torchvision, ray.tune, mlflow, dvc, pandas"],
        "ripu: imports")
    run([str(bin_ / "ripu"), "--help"], "ripu: ripu --help")
    data, trial = work / "data", work / "trial"
    sets = lambda d: [a for k, v in d.items() for a in ("-S", f"{k}={v}")]  # noqa: E731
    run([str(bin_ / "ripu"), "data", "synth", "-q", "--out", str(data), *sets(TINY_DATA)],
        "ripu: tiny data", cwd=REPO)
    trial_set = TINY_TRIAL | {"data.source_root": data / "source",
                              "data.target_root": data / "target",
                              "tracking.uri": f"sqlite:///{work / 'mlflow.db'}"}
    run([str(bin_ / "ripu"), "train", "-q", "--out", str(trial), *sets(trial_set)],
        "ripu: tiny trial", cwd=REPO)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LabelStudio(NamedTuple):
    """A running Label Studio server and its first user (``token``: the user's API token)."""

    url: str
    token: str
    email: str
    password: str


@contextlib.contextmanager
def label_studio_server(binary: Path, data: Path, what: str = "label-studio",
                        email: str = "drift@example.com", wait: float = 300
                        ) -> Iterator[LabelStudio]:
    """``label-studio start`` (``binary``) as its users start it, on a free loopback port with
    the data folder ``data`` (its log: ``data/server.log``), the first user and API token set
    at start-up; yields it once ``/health`` answers, then stops its whole process group.
    The drift check's servers and the test suite's (tests/annotate/conftest.py) start here."""
    port = free_port()
    server = LabelStudio(f"http://127.0.0.1:{port}", secrets.token_hex(20), email,
                         secrets.token_urlsafe(12))
    data.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "LABEL_STUDIO_USERNAME": server.email,
           "LABEL_STUDIO_PASSWORD": server.password, "LABEL_STUDIO_USER_TOKEN": server.token,
           "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true", "LABEL_STUDIO_BASE_DATA_DIR": str(data)}
    log_path = data / "server.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(  # noqa: S603
            [str(binary), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port",
             str(port), "--data-dir", str(data)],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=data, start_new_session=True)
        try:
            deadline = time.monotonic() + wait
            while not _answers(server.url + "/health"):
                if process.poll() is not None:
                    lines = log_path.read_text().strip().splitlines()
                    raise StepFailed(f"{what}: server exited {process.returncode}: "
                                     f"{lines[-1] if lines else 'no output'}")
                if time.monotonic() > deadline:
                    raise StepFailed(f"{what}: /health did not answer in {wait:.0f} s")
                time.sleep(2)
            yield server
        finally:
            _stop(process)


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the process group of ``process``, SIGKILL when it outlives 30 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5):  # noqa: S310
            return True
    except OSError:
        return False


def project_id(url: str, token: str, title: str) -> int:
    """The id of the Label Studio project called ``title`` (the people trial's)."""
    request = urllib.request.Request(f"{url}/api/projects?page_size=1000",  # noqa: S310
                                     headers={"Authorization": f"Token {token}"})
    with urllib.request.urlopen(request, timeout=60) as answer:  # noqa: S310
        body = json.loads(answer.read())
    found = [p["id"] for p in body.get("results", body) if p["title"] == title]
    if len(found) != 1:
        raise StepFailed(f"people round trip: {len(found)} projects titled {title!r}, expected 1")
    return found[0]


def people_round_trip(ripu_python: Path, ls_python: Path, work: Path) -> None:
    """A tiny people trial against the fresh Label Studio: each round pushed as tasks (the
    trial exits 75, waiting), answered from the ground truth through the API by the test
    suite's simulated annotator (tests/annotate/annotator.py, in Label Studio's venv), pulled
    on ``--resume``; the trial must finish. Uses ``ripu_smoke``'s tiny data."""
    data, trial, truth = work / "data", work / "people-trial", work / "truth.npz"
    run([str(ripu_python), "-c", TRUTH_SCRIPT, str(data / "target"), str(truth)],
        "people round trip: ground truth")
    with label_studio_server(ls_python.parent / "label-studio", work / "label-studio") as server:
        url, token = server.url, server.token
        env = {**os.environ, "LABEL_STUDIO_TOKEN": token}
        sets = TINY_TRIAL | {"data.source_root": data / "source",
                             "data.target_root": data / "target",
                             "tracking.uri": f"sqlite:///{work / 'people.db'}",
                             "annotate.url": url, "annotate.project": "drift"}
        train = [str(ripu_python.parent / "ripu"), "train", "-q", "--out", str(trial),
                 *(a for k, v in sets.items() for a in ("-S", f"{k}={v}"))]
        for round_index in range(TINY_TRIAL["active.rounds"] + 1):
            done = subprocess.run([*train, *(["--resume"] if round_index else [])], env=env,
                                  cwd=REPO, capture_output=True, text=True, timeout=900)
            if done.returncode == 0:
                break
            if done.returncode != WAITING_STATUS or round_index == TINY_TRIAL["active.rounds"]:
                tail = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()
                raise StepFailed(f"people round trip: trial exit {done.returncode} at round "
                                 f"{round_index}: {tail[-1]}")
            project = project_id(url, token, f"drift/{trial.name}")
            run([str(ls_python), str(ANNOTATOR), url, str(project), str(round_index),
                 str(truth)], f"people round trip: answering round {round_index}", env=env)
    if not (trial / "results.json").is_file():
        raise StepFailed("people round trip: the trial finished without results.json")


def steps(work: Path, label_studio: bool) -> list[tuple[str, Callable[[], None]]]:
    state: dict[str, Path] = {}

    def ripu_resolve() -> None:
        state["ripu"] = fresh_venv(work / "venv", ["-c", str(HERE / "torch.txt"),
                                                   f"{REPO}[dev]"], "ripu")
        report_changes(state["ripu"], HERE / "ripu.lock", "ripu", ignore={"ripu", "pip"})

    def ls_uncapped() -> None:
        python = fresh_venv(work / "venv-ls-uncapped", ["-r", str(HERE / "label-studio.in")],
                            "label-studio")
        report_changes(python, HERE / "label-studio.lock", "label-studio without the caps",
                       ignore={"pip"})
        caps = held_caps()
        try:
            with label_studio_server(python.parent / "label-studio",
                                     work / "label-studio-uncapped", "label-studio-uncapped"):
                pass
        except StepFailed as exc:
            if not caps:
                raise
            print(f"  without the caps its server fails ({exc}): the caps "
                  f"({', '.join(caps)}) are still needed")
            return
        if caps:
            print(f"  without the caps its server starts: the caps ({', '.join(caps)}) may go "
                  f"(delete their lines in {CAPS.name}, then `make lock`)")

    def ls_resolve() -> None:
        state["ls"] = fresh_venv(work / "venv-ls", ["-r", str(HERE / "label-studio.in"),
                                                    "-c", str(CAPS)], "label-studio")
        report_changes(state["ls"], HERE / "label-studio.lock", "label-studio", ignore={"pip"})

    out = [("ripu: resolve afresh", ripu_resolve),
           ("ripu: smoke", lambda: ripu_smoke(state["ripu"], work))]
    if label_studio:
        out += [("label-studio: resolve afresh without the caps", ls_uncapped),
                ("label-studio: resolve afresh with the caps", ls_resolve),
                ("label-studio: people round trip",
                 lambda: people_round_trip(state["ripu"], state["ls"], work))]
    return out


def held_caps() -> list[str]:
    """The packages ``label-studio-caps.txt`` caps."""
    return re.findall(r"^([A-Za-z0-9._-]+)\s*<", CAPS.read_text(), re.MULTILINE)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", metavar="DIR",
                        help="work in DIR and keep it (default: a temporary folder, removed)")
    parser.add_argument("--no-label-studio", action="store_true",
                        help="check ripu's environment only")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ripu-drift-") as tmp:
        work = Path(args.keep) if args.keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for name, step in steps(work, not args.no_label_studio):
            start = time.monotonic()
            print(f"drift: {name} ...", flush=True)
            try:
                step()
            except StepFailed as exc:
                print(f"drift: FAILED at {name}: {exc}", flush=True)
                return 1
            print(f"drift: {name} ok ({time.monotonic() - start:.0f} s)", flush=True)
    print("drift: every step passed; `make lock` would take these versions", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
