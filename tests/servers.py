"""Real ``vslim-serve`` processes for the tests (the helper lives in the package: benchmarks use it too)."""

from __future__ import annotations

import subprocess

from vslim.serving.process import ServerProcess, serve_command

__all__ = ["ServerProcess", "start_failure"]


def start_failure(bundle, *extra, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a server expected to refuse to start."""
    return subprocess.run(
        [*serve_command(), "--bundle", str(bundle), "--port", "0", *map(str, extra)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
