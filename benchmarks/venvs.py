"""The benchmark's own virtualenvs, made on first need from pinned requirements.

``benchmarks/.nameko-venv`` (nameko 2.14 and eventlet, which must not meet
gevent in one process), ``benchmarks/.grpc-venv`` (grpcio, which the project
neither needs nor should pull into its .venv, and whose threads and asyncio
loop must not meet gevent's monkey-patching), ``benchmarks/.zero-venv`` (zero, PyPI
``zeroapi``, with its msgspec: a peer, not a dependency, and its threads and
asyncio loop must not meet gevent either) and ``benchmarks/.chart-venv``
(matplotlib, which the project's .venv does not have). Each is rebuilt when
its requirements file changes; a failure is returned as a reason, never raised.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
INSTALL_TIMEOUT = 900  # seconds, for the venv and pip together

VENVS = {
    "nameko": (HERE / ".nameko-venv", HERE / "requirements-nameko.txt", "import nameko"),
    "grpc": (HERE / ".grpc-venv", HERE / "requirements-grpc.txt", "import grpc, msgpack"),
    "zero": (HERE / ".zero-venv", HERE / "requirements-zero.txt", "import zero, msgspec"),
    "chart": (HERE / ".chart-venv", HERE / "requirements-chart.txt", "import matplotlib"),
}


def made(name: str) -> Path | None:
    """Return the venv's python if it is made and up to date, else None; never make it.

    For a pass that must stay seconds long (``run.py --quick``): it uses a venv
    that a full run made, and skips what needs one that is missing.
    """
    path, requirements, _ = VENVS[name]
    python, stamp = path / "bin" / "python", path / ".installed"
    if python.exists() and stamp.exists() and stamp.read_text() == _digest(requirements):
        return python
    return None


def ensure(name: str) -> tuple[Path | None, str]:
    """Return (the venv's python, "") or (None, why it could not be made)."""
    if (ready := made(name)) is not None:
        return ready, ""
    path, requirements, probe = VENVS[name]
    python, stamp = path / "bin" / "python", path / ".installed"
    print(f"Making {path.relative_to(HERE.parent)} from {requirements.name} ...", file=sys.stderr)
    try:
        if path.exists():
            shutil.rmtree(path)
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run(
            [base, "-m", "venv", str(path)],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "-r", str(requirements)],
            check=True,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT,
        )
        subprocess.run([str(python), "-c", probe], check=True, capture_output=True, timeout=60)
    except subprocess.CalledProcessError as err:
        lines = [
            line for line in (err.stderr or "").splitlines() if "WARNING: Location" not in line
        ]
        return None, f"{path.name} could not be made: {' '.join(lines[-3:])[:300] or err}"
    except (OSError, subprocess.TimeoutExpired) as err:
        return None, f"{path.name} could not be made: {err}"
    stamp.write_text(_digest(requirements))
    return python, ""


def _digest(requirements: Path) -> str:
    return hashlib.sha256(requirements.read_bytes()).hexdigest()
