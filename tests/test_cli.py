"""The `ripu` command line as a user runs it: help, config check, exit status 2 on bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SUBCOMMANDS = [["config", "check"], ["data", "synth"], ["data", "check"], ["train"],
               ["select"], ["export"], ["evaluate"], ["sweep"], ["report"]]


def ripu(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ripu", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.integration
def test_help_lists_every_subcommand():
    out = ripu("--help")
    assert out.returncode == 0
    for name in ("config", "data", "train", "select", "export", "evaluate", "sweep", "report"):
        assert name in out.stdout


@pytest.mark.parametrize("words", SUBCOMMANDS, ids=lambda w: "-".join(w))
def test_every_subcommand_has_help_with_params_and_overrides(words):
    from ripu.cli import build_parser

    parser = build_parser()
    with pytest.raises(SystemExit) as exc:
        parser.parse_args([*words, "--help"])
    assert exc.value.code == 0


@pytest.mark.integration
def test_config_check_prints_resolved_config():
    out = ripu("config", "check", "--params", "params.yaml", "-S", "active.budget=0.05")
    assert out.returncode == 0, out.stderr
    assert "budget: 0.05" in out.stdout and "ok:" in out.stderr


@pytest.mark.integration
@pytest.mark.parametrize("args, message", [
    (["-S", "active.budget=0"], "active.budget: 0.0 is out of range"),
    (["-S", "optim.iters=0"], "optim.iters: 0 is out of range"),
    (["-S", "active.nope=1"], "active.nope: unknown key"),
    (["-S", "active.strategy=magic"], "active.strategy: unknown strategy 'magic'"),
    (["--params", "missing.yaml"], "missing.yaml: params file not found"),
])
def test_bad_input_exits_2_with_one_line(args, message):
    out = ripu("config", "check", *args)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith("ripu: error: ")
    assert out.stdout == ""


@pytest.mark.integration
def test_train_refuses_bad_params_before_writing(tmp_path):
    out_dir = tmp_path / "trial"
    out = ripu("train", "--out", str(out_dir), "-S", "active.radius=-1")
    assert out.returncode == 2 and "active.radius" in out.stderr
    assert not out_dir.exists()


@pytest.mark.integration
@pytest.mark.parametrize("words", [["--help"], ["train", "--help"], ["config", "check"]],
                         ids=lambda w: "-".join(w))
def test_help_and_config_check_import_no_torch(words):
    """The parser and `config check` answer without importing torch (seconds on a laptop);
    the handlers that need it are imported when their command runs."""
    code = ("import runpy, sys\nsys.argv = ['ripu', *sys.argv[1:]]\ntry:\n"
            "    runpy.run_module('ripu', run_name='__main__')\nexcept SystemExit as e:\n"
            "    assert not e.code, e.code\nprint('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, *words], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"


@pytest.mark.integration
def test_a_command_loads_its_handler_when_it_runs(tmp_path):
    out = ripu("data", "synth", "--out", str(tmp_path / "d"), "-q", "-S", "synth.source_images=1",
               "-S", "synth.target_train=1", "-S", "synth.target_val=1", "-S", "synth.height=32",
               "-S", "synth.width=64")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "d" / "index.json").is_file()
