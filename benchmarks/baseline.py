"""The baseline every benchmark compares with: BrainGlobe 2.3.1 in its own virtual environment."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BASELINE_SPEC = "brainglobe-atlasapi[atlasgen]==2.3.1"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def ensure_venv(venv: Path, spec: str, module: str, constraints: Path | None = None) -> Path:
    """The python of ``venv``, creating it with ``spec`` (pinned by ``constraints``) when it
    is missing or broken (``module`` must import)."""
    python = venv / "bin" / "python"
    check = [str(python), "-c", f"import {module}"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    log(f"creating the venv {venv} ({spec})")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    install = [str(python), "-m", "pip", "install", "--quiet"]
    if constraints is not None:
        install += ["-c", str(constraints)]
    subprocess.run([*install, spec], check=True)
    return python


def ensure_baseline_venv(venv: Path) -> Path:
    """The baseline venv's python (BrainGlobe 2.3.1; its reader must import)."""
    return ensure_venv(venv, BASELINE_SPEC, "brainglobe_atlasapi.core")


BG3_SPEC = "brainglobe-atlasapi[atlasgen]==3.0.2"
BG3_CONSTRAINTS = Path(__file__).resolve().parents[1] / "tests" / "bg3" / "constraints.txt"


def ensure_bg3_venv(venv: Path) -> Path:
    """The python of a venv with BrainGlobe 3.0.2 (the v3 format's own packager and client),
    pinned by tests/bg3/constraints.txt (the test suite makes and reuses the same one,
    .venv-bg3)."""
    return ensure_venv(
        venv, BG3_SPEC, "brainglobe_atlasapi.atlas_generation.wrapup", BG3_CONSTRAINTS
    )
