"""Real ``vslim-serve`` processes on 127.0.0.1, on ports the OS picks."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

SERVE = str(Path(sys.executable).parent / "vslim-serve")


class ServerProcess:
    def __init__(self, bundle, *extra, ready_timeout: float = 180):
        self.cmd = [SERVE, "--bundle", str(bundle), "--port", "0", *map(str, extra)]
        self.proc = subprocess.Popen(self.cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                                     env={**os.environ, "VSLIM_PROGRESS": "0"})
        self.lines: list[str] = []
        self.port = None
        ready = threading.Event()

        def read():
            for line in self.proc.stderr:
                self.lines.append(line.rstrip())
                m = re.search(r"listening on [\d.]+:(\d+)", line)
                if m:
                    self.port = int(m.group(1))
                if "ready in" in line:
                    ready.set()
            ready.set()

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        if not ready.wait(ready_timeout) or self.port is None or self.proc.poll() is not None:
            self.proc.kill()
            raise RuntimeError(f"server did not start: {' | '.join(self.lines[-10:])}")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def stop(self, sig=signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()

    def log(self) -> str:
        time.sleep(0.1)
        return "\n".join(self.lines)


def start_failure(bundle, *extra, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a server expected to refuse to start."""
    return subprocess.run([SERVE, "--bundle", str(bundle), "--port", "0", *map(str, extra)], capture_output=True,
                          text=True, timeout=timeout)
