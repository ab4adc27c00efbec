"""Status lines of slow phases: on a terminal only, and only for phases longer than a moment."""

from __future__ import annotations

import sys
import time

import pytest

from bridges import status as status_module
from bridges.status import status


@pytest.fixture
def terminal(monkeypatch, capsys):
    """capsys, with its stderr posing as a terminal (patched in the test: during fixture setup
    pytest's capture is suspended and sys.stderr is another object)."""
    monkeypatch.delenv("CONVERT2SNN_QUIET", raising=False)
    monkeypatch.setattr(status_module, "ANNOUNCE_AFTER_S", 0.05)
    monkeypatch.setattr(status_module, "shown", _shown_on_a_terminal)
    return capsys


_real_shown = status_module.shown


def _shown_on_a_terminal(enabled: bool = True) -> bool:
    isatty = sys.stderr.isatty
    sys.stderr.isatty = lambda: True
    try:
        return _real_shown(enabled)
    finally:
        sys.stderr.isatty = isatty


def test_a_slow_phase_is_announced_then_timed(terminal):
    with status("exporting"):
        time.sleep(0.4)
    lines = terminal.readouterr().err.splitlines()
    assert lines[0] == "convert2snn: exporting …"
    assert lines[1].startswith("convert2snn: exporting: ") and lines[1].endswith(" s")
    assert float(lines[1].split(": ")[-1][:-2]) >= 0.4


def test_a_quick_phase_prints_nothing(terminal):
    with status("quick"):
        pass
    time.sleep(0.1)  # a timer that was not cancelled would print by now
    assert terminal.readouterr().err == ""


def test_quiet_disabled_or_not_a_terminal_prints_nothing(terminal, monkeypatch):
    with status("off", enabled=False):
        time.sleep(0.15)
    monkeypatch.setenv("CONVERT2SNN_QUIET", "1")
    with status("quiet"):
        time.sleep(0.15)
    monkeypatch.delenv("CONVERT2SNN_QUIET")
    monkeypatch.setattr(status_module, "shown", _real_shown)  # capsys's stderr is not a terminal
    with status("piped"):
        time.sleep(0.15)
    assert terminal.readouterr().err == ""


def test_an_error_inside_still_ends_the_line(terminal):
    with pytest.raises(ValueError), status("failing"):
        time.sleep(0.2)
        raise ValueError("boom")
    err = terminal.readouterr().err
    assert "convert2snn: failing …" in err and "convert2snn: failing: " in err
