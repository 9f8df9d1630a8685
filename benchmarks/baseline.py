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
