"""Run a benchmark program in a fresh Python process (so an environment switch such
as ``GRADJIT_UNROLL_TRIPS`` or ``GRADJIT_VECTOR_MATH`` applies from its start and
nothing compiled earlier is shared) and read the JSON object it prints last."""
from __future__ import annotations

import json
import os
import subprocess
import sys


def run_child(src: str, env: dict, what: str) -> dict:
    """Run Python source ``src`` with ``env`` added to this environment; returns the
    JSON object on its last stdout line.  Raises ``RuntimeError`` (with the end of
    its stderr) naming ``what`` if it fails."""
    got = subprocess.run([sys.executable, "-c", src], env=dict(os.environ, **env),
                         capture_output=True, text=True, check=False)
    if got.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{got.stderr[-2000:]}")
    return json.loads(got.stdout.strip().splitlines()[-1])
