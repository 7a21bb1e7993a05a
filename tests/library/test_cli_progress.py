"""What `mmsa index build` shows in a terminal: one progress bar, no log line glued onto it
(issue 12: "the terminal shows the progress bar twice")."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # a subprocess build


def _screen(text: str) -> list[str]:
    """What a terminal shows for ``text``: each ``\\r`` returns to the start of the line and
    what follows overwrites it; empty lines dropped."""
    out = []
    for line in text.split("\n"):
        cur = ""
        for seg in line.split("\r"):
            cur = seg + cur[len(seg):]
        if cur.strip():
            out.append(cur.rstrip())
    return out


def test_the_terminal_shows_one_build_bar(tmp_path, tiny_csv, tiny_checkpoint):
    """`mmsa index build` in a subprocess (the CLI's own logging, not pytest's): the bar is
    drawn once, at 100%, and no log line is glued onto it."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "MMSA_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run(
        [sys.executable, "-m", "mmsa", "index", "build", str(tiny_csv), "--name", "bars",
         "--indexes", str(tmp_path / "idx"), "--checkpoint", str(tiny_checkpoint),
         "--chunk-size", "16"],
        capture_output=True, env=env, timeout=600, cwd=tmp_path)
    err = proc.stderr.decode("utf-8")  # bytes: text mode would turn each \r into \n
    assert proc.returncode == 0, err[-3000:]
    screen = _screen(err.replace("\r\n", "\n"))
    bars = [line for line in screen if line.startswith("build bars:")]
    assert len(bars) == 1, screen
    assert "100%" in bars[0] and "72/72" in bars[0], bars
    assert not [line for line in screen if "INFO" in line and "%|" in line], screen
    assert any("mmsa.library.build" in line for line in screen)  # the logs are still shown
    from mmsa.library.views import STEPS

    for step in STEPS:  # the map and page caches after it: one bar each
        assert len([line for line in screen if line.startswith(f"{step} bars:")]) == 1, screen
