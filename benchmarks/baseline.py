"""The baseline every benchmark compares with: BrainGlobe 2.3.1 in its own virtual environment."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BASELINE_SPEC = "brainglobe-atlasapi[atlasgen]==2.3.1"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def ensure_baseline_venv(venv: Path) -> Path:
    """The baseline venv's python, creating the venv with BrainGlobe 2.3.1 when it is missing
    or broken (its reader must import)."""
    python = venv / "bin" / "python"
    check = [str(python), "-c", "import brainglobe_atlasapi.core"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    log(f"creating the baseline venv {venv} ({BASELINE_SPEC})")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", BASELINE_SPEC], check=True)
    return python


BG3_SPEC = "brainglobe-atlasapi[atlasgen]==3.0.2"
BG3_CONSTRAINTS = Path(__file__).resolve().parents[1] / "tests" / "bg3" / "constraints.txt"


def ensure_bg3_venv(venv: Path) -> Path:
    """The python of a venv with BrainGlobe 3.0.2 (the v3 format's own packager and client),
    pinned by tests/bg3/constraints.txt; made when missing or broken (the test suite makes
    and reuses the same one, .venv-bg3)."""
    python = venv / "bin" / "python"
    check = [str(python), "-c", "import brainglobe_atlasapi.atlas_generation.wrapup"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    log(f"creating the BrainGlobe 3 venv {venv} ({BG3_SPEC})")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    install = [str(python), "-m", "pip", "install", "--quiet", "-c", str(BG3_CONSTRAINTS)]
    subprocess.run([*install, BG3_SPEC], check=True)
    return python
