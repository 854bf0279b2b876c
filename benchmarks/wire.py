"""The echo rows of benchmarks/run.py, under wire.py's old command line.

    .venv/bin/python benchmarks/wire.py [--seconds 5] [--rounds 3] [--callers 16 64]

Superseded by ``benchmarks/run.py`` (see docs/benchmarks.rst), which measures
every pair and workload; this runs its echo workload only, without nameko,
streams or docs, and passes any other option on.
"""

import runpy
import sys
from pathlib import Path

if __name__ == "__main__":
    run = Path(__file__).resolve().parent / "run.py"
    options = sys.argv[1:]
    sys.argv = [str(run), "--workloads", "echo", "--rows", "--no-nameko", "--no-docs", *options]
    runpy.run_path(str(run), run_name="__main__")
