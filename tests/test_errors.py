"""The one error-to-exit-status wrapper every entry point uses."""

from __future__ import annotations

import pytest

from ripu.errors import ConfigError, DatasetError, exit_status


def test_status_of_a_clean_run(capsys):
    assert exit_status(lambda: None) == 0
    assert exit_status(lambda a, b=0: a + b, 3, b=4) == 7
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("error", [ConfigError("seed: bad, expected an integer"),
                                   DatasetError("seed: bad, expected an integer")])
def test_bad_input_is_one_line_and_status_2(error, capsys):
    def fail():
        print("partial output")
        raise error

    assert exit_status(fail) == 2
    out, err = capsys.readouterr()
    assert out == "partial output\n"
    assert err == "ripu: error: seed: bad, expected an integer\n"


def test_ctrl_c_is_130_and_bugs_propagate(capsys):
    def interrupted():
        raise KeyboardInterrupt

    assert exit_status(interrupted) == 130
    assert capsys.readouterr().err == "ripu: interrupted\n"
    with pytest.raises(ZeroDivisionError):
        exit_status(lambda: 1 / 0)
