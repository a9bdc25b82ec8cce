"""A ``vslim-serve`` process on 127.0.0.1 with a port the OS picks: for benchmarks, demos and tests."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections import deque
from pathlib import Path

from .errors import ServingError

LOG_LINES = 20_000


def serve_command() -> list[str]:
    script = Path(sys.executable).parent / "vslim-serve"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "vslim.cli.main", "serve"]


class ServerProcess:
    """Starts the server, waits until it reports ready, and knows its port and log."""

    def __init__(self, bundle, *extra, ready_timeout: float = 300, env: dict | None = None):
        """``bundle`` None: ``extra`` names what to serve (``--model-repository DIR``)."""
        served = ["--bundle", str(bundle)] if bundle is not None else []
        self.cmd = [*serve_command(), *served, "--port", "0", *map(str, extra)]
        self.proc = subprocess.Popen(
            self.cmd,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "VSLIM_PROGRESS": "0", **(env or {})},
        )
        self.lines: deque[str] = deque(maxlen=LOG_LINES)  # bounded: a long run logs a line per request
        self.port: int | None = None
        self.grpc_port: int | None = None  # gRPC's own port when --grpc-port split the transports
        self._signalled = False
        ready = threading.Event()
        stderr = self.proc.stderr
        assert stderr is not None  # opened with stderr=PIPE

        def read():
            for line in stderr:
                self.lines.append(line.rstrip())
                m = re.search(r"listening on [^ ]+:(\d+) ", line)
                if m:
                    self.port = int(m.group(1))
                    split = re.search(r" and [^ ]+:(\d+) \(gRPC", line)
                    self.grpc_port = int(split.group(1)) if split else self.port
                if "ready in" in line:
                    ready.set()
            ready.set()

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        if not ready.wait(ready_timeout) or self.port is None or self.proc.poll() is not None:
            self.proc.kill()
            raise ServingError(f"server did not start: {' | '.join(list(self.lines)[-10:])}")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def grpc_address(self) -> str:
        """Where gRPC clients go: the shared port, or gRPC's own."""
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def terminate(self, sig=signal.SIGTERM) -> None:
        """Ask the server to drain and exit (once; ``stop`` then only waits)."""
        if self.proc.poll() is None and not self._signalled:
            self._signalled = True
            self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout: float = 60) -> int:
        """Terminate (unless already asked) and wait; the exit code."""
        self.terminate(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)
            self._reader.join(5)

    def log(self) -> str:
        self._reader.join(0.2)
        return "\n".join(self.lines)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
