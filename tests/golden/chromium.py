"""Headless Chromium (Debian's `chromium`) as the reference browser for lowbit's HTML reports.

    render(page, png, width=1100, height=2400) -> stderr text

Writes a screenshot of the page as the browser lays it out (no sandbox: the tests run as root in
containers; no GPU), with the browser's own log on stderr so callers can look for console errors
(`console_errors`). A missing or failing browser raises: nothing skips.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path


def binary() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    raise FileNotFoundError("no chromium on PATH (Debian package `chromium`; `make deps-system` installs it)")


def render(page: Path, png: Path, width: int = 1100, height: int = 2400, timeout: float = 120) -> str:
    with tempfile.TemporaryDirectory(prefix="lowbit-chromium-") as profile:
        cmd = [binary(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               "--no-first-run", "--enable-logging=stderr", "--v=0", f"--user-data-dir={profile}",
               f"--window-size={width},{height}", f"--screenshot={png}", Path(page).resolve().as_uri()]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "HOME": profile})
    if proc.returncode != 0 or not Path(png).is_file():
        raise RuntimeError(f"chromium failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc.stderr


def console_errors(stderr: str) -> list[str]:
    """The page's console messages at error level and uncaught errors, from Chromium's log."""
    return [line for line in stderr.splitlines()
            if ("CONSOLE" in line and ("ERROR" in line or "Uncaught" in line)) or "Uncaught" in line]
