"""What the browser tests need, installed when missing, so that the README's test command
alone passes on a fresh machine: Debian's Chromium (through apt-get, as root) and axe-core
(``npm ci`` in ``tests/web``). Called once per session when browser tests are collected; a
tool that cannot be installed stops the run with the reason (the tests are never skipped)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

WEB = Path(__file__).parent / "web"
AXE = WEB / "node_modules" / "axe-core" / "axe.min.js"


def chromium() -> str | None:
    """Debian's Chromium, if installed."""
    found = shutil.which("chromium")
    if found is None and Path("/usr/bin/chromium").is_file():
        found = "/usr/bin/chromium"
    return found


def ensure_browser_tools() -> list[str]:
    """Install Chromium and axe-core where missing; return what was installed.

    Raises
    ------
    RuntimeError
        With what is missing and the command that installs it, when it cannot be installed
        here (not root, no apt-get, no npm, or the install failed).
    """
    installed = []
    if chromium() is None:
        _apt_install_chromium()
        installed.append("chromium (apt-get)")
    if not AXE.is_file():
        npm = shutil.which("npm")
        if npm is None:
            _apt_install("npm")
            npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("the browser tests need npm to install axe-core: install npm")
        _run([npm, "ci", "--silent", "--no-audit", "--no-fund"], cwd=WEB, what="npm ci")
        installed.append("axe-core (npm ci in tests/web)")
    return installed


def _apt_install_chromium() -> None:
    _apt_install("chromium")
    if chromium() is None:
        raise RuntimeError("apt-get installed chromium, but no `chromium` command appeared")


def _apt_install(package: str) -> None:
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        raise RuntimeError(
            f"the browser tests need Debian's {package}; install it (as root: "
            f"`apt-get install {package}`) and run the tests again"
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    _run([apt, "update", "-qq"], env=env, what="apt-get update")
    _run([apt, "install", "-y", "-qq", package], env=env, what=f"apt-get install {package}")


def _run(command: list[str], what: str, **options: object) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False, **options)  # type: ignore[call-overload]
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"{what} failed (exit {done.returncode}): {' / '.join(tail)}")
