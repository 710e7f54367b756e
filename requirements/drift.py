"""Drift check: would a fresh install today still work, and how would it differ from the locks?

Resolves the unlocked requirements afresh, each in a temporary venv, as a new user's
``pip install`` would (``pyproject.toml`` with the machine's torch pair; Label Studio's
``label-studio.in`` *without* the workaround caps of ``label-studio-caps.txt``), prints every
package whose version would change against the lock, then smoke-tests the fresh resolution:
imports, ``ripu --help``, a tiny trial, a Label Studio server answering ``/health``.

Exits 0 when every step passes, 1 with one line naming the first failing step. Run it as
``make drift`` (minutes: two venvs are installed; the pip cache makes later runs faster).
"""

from __future__ import annotations

import argparse
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CAPS = HERE / "label-studio-caps.txt"  # workarounds the lock applies and the drift check drops
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", re.MULTILINE)
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


def label_studio_smoke(python: Path, work: Path, wait: float = 300) -> None:
    port = free_port()
    log = (work / "label-studio.log").open("w")
    server = subprocess.Popen(  # noqa: S603
        [str(python.parent / "label-studio"), "start", "--no-browser", "--internal-host",
         "127.0.0.1", "--port", str(port), "--data-dir", str(work / "ls-data")],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if server.poll() is not None:
                lines = (work / "label-studio.log").read_text().strip().splitlines()
                raise StepFailed(f"label-studio: server exited {server.returncode}: "
                                 f"{lines[-1] if lines else 'no output'}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5):  # noqa: S310
                    return
            except OSError:
                time.sleep(2)
        raise StepFailed(f"label-studio: /health did not answer in {wait:.0f} s")
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def steps(work: Path, label_studio: bool) -> list[tuple[str, Callable[[], None]]]:
    state: dict[str, Path] = {}

    def ripu_resolve() -> None:
        state["ripu"] = fresh_venv(work / "venv", ["-c", str(HERE / "torch.txt"),
                                                   f"{REPO}[dev]"], "ripu")
        report_changes(state["ripu"], HERE / "ripu.lock", "ripu", ignore={"ripu", "pip"})

    def ls_resolve() -> None:
        state["ls"] = fresh_venv(work / "venv-ls", ["-r", str(HERE / "label-studio.in")],
                                 "label-studio")
        report_changes(state["ls"], HERE / "label-studio.lock", "label-studio",
                       ignore={"pip"})
        held = re.findall(r"^([A-Za-z0-9._-]+)\s*<", CAPS.read_text(), re.MULTILINE)
        if held:
            print(f"  (the lock caps {', '.join(held)}; this resolution does not)")

    out = [("ripu: resolve afresh", ripu_resolve),
           ("ripu: smoke", lambda: ripu_smoke(state["ripu"], work))]
    if label_studio:
        out += [("label-studio: resolve afresh", ls_resolve),
                ("label-studio: server /health", lambda: label_studio_smoke(state["ls"], work))]
    return out


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
