"""Finding, and building, a Paddle Lite optimizer on a host whose Python has none.

The official optimizer ships only in the ``paddlelite`` wheels, built for Python
<= 3.10; Python 3.10 is not available from the registries here, 3.9 is, as Debian
bullseye packages. ``setup_toolchain`` downloads those packages with a private apt
configuration (the system's apt sources stay untouched), unpacks them into a
prefix under the vslim home, makes a virtual environment there, bootstraps pip
from a wheel the host's pip downloads, and installs ``paddlelite==2.13rc0`` with
``numpy<2`` (docs/architecture.md, Paddle Lite). Each step is skipped when already done; the
toolchain counts as installed only once ``toolchain.json`` is written, last.

Discovery order: ``paddlelite`` importable here, then an explicit optimizer
(``--opt-bin`` or ``VSLIM_LITE_OPT``), then the vslim toolchain.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import LiteError

LITE_VERSION = "2.13rc0"
PYTHON = "python3.9"
DEBIAN_PACKAGES = (
    "python3.9",
    "python3.9-minimal",
    "libpython3.9-minimal",
    "libpython3.9-stdlib",
    "libpython3.9",
    "libffi7",
    "libmpdec3",
    "libssl1.1",
    "python3-distutils",
    "python3-lib2to3",
)
APT_SOURCES = (
    "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bullseye main\n"
    "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian-security "
    "bullseye-security main\n"
)
SETUP_HINT = "run `vslim lite setup` (builds an isolated Python 3.9 with paddlelite 2.13rc0, about a minute)"


def vslim_home() -> Path:
    return Path(os.environ.get("VSLIM_HOME") or Path.home() / ".cache" / "vslim")


def toolchain_dir(home: Path | None = None) -> Path:
    return (home or vslim_home()) / "lite-toolchain"


@dataclass
class Toolchain:
    """How to run the optimizer (and, when available, the Lite Python runtime)."""

    source: str  # "python" | "opt-bin" | "vslim"
    opt: list[str]  # command prefix running paddle_lite_opt
    python: list[str] | None  # a Python that imports paddlelite, for running x86 .nb files
    env: dict[str, str] = field(default_factory=dict)
    location: str = ""
    version: str = "unknown"

    def _env(self) -> dict[str, str]:
        return {**os.environ, **self.env}

    def run_opt(self, args: list[str], timeout: float = 1800, cwd: Path | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*self.opt, *args], capture_output=True, text=True, timeout=timeout, env=self._env(), cwd=cwd
        )

    def run_python(self, args: list[str], timeout: float = 1800) -> subprocess.CompletedProcess:
        if not self.python:
            raise LiteError(
                f"the optimizer found ({self.location}) comes without a Python that imports paddlelite, "
                f"so .nb files cannot be run here; {SETUP_HINT}"
            )
        return subprocess.run([*self.python, *args], capture_output=True, text=True, timeout=timeout, env=self._env())

    def describe(self) -> dict:
        return asdict(self)


def _opt_version(tc: Toolchain) -> str:
    try:
        proc = tc.run_opt(["--version"], timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LiteError(f"the optimizer {tc.location} cannot run: {exc}") from exc
    text = (proc.stdout + proc.stderr).strip().splitlines()
    if proc.returncode != 0 or not text:
        raise LiteError(
            f"the optimizer {tc.location} failed to report its version (exit {proc.returncode}): {' '.join(text[-3:])}"
        )
    return text[-1].strip()


def _vslim_toolchain(home: Path | None) -> Toolchain | None:
    root = toolchain_dir(home)
    manifest = root / "toolchain.json"
    if not manifest.is_file():
        return None
    info = json.loads(manifest.read_text())
    python = str(root / "venv" / "bin" / "python")
    env = {"LD_LIBRARY_PATH": str(root / "root" / "usr" / "lib" / "x86_64-linux-gnu")}
    return Toolchain(
        "vslim",
        [python, str(root / "venv" / "bin" / "paddle_lite_opt")],
        [python],
        env,
        str(root),
        info.get("optimizer_version", "unknown"),
    )


def find_toolchain(opt_bin: str | None = None, home: Path | None = None) -> Toolchain:
    """The first optimizer found, in the documented order; a clear error naming the fix when none is."""
    if importlib.util.find_spec("paddlelite") is not None:
        script = shutil.which("paddle_lite_opt") or str(Path(sys.executable).parent / "paddle_lite_opt")
        tc = Toolchain("python", [sys.executable, script], [sys.executable], {}, sys.executable)
        tc.version = _opt_version(tc)
        return tc
    opt_bin = opt_bin or os.environ.get("VSLIM_LITE_OPT")
    if opt_bin:
        path = Path(opt_bin)
        if not path.is_file():
            raise LiteError(f"optimizer {opt_bin} (from --opt-bin or VSLIM_LITE_OPT) does not exist")
        sibling = path.parent / "python"
        tc = Toolchain("opt-bin", [str(path)], [str(sibling)] if sibling.is_file() else None, {}, str(path))
        tc.version = _opt_version(tc)
        return tc
    found = _vslim_toolchain(home)
    if found is None:
        raise LiteError(
            f"no Paddle Lite optimizer found (paddlelite is not importable here, no --opt-bin, and no "
            f"toolchain at {toolchain_dir(home)}): {SETUP_HINT}"
        )
    return found


# --------------------------------------------------------------------------- setup


def _run(cmd: list[str], what: str, env: dict | None = None, cwd: Path | None = None) -> str:
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env={**os.environ, **(env or {})}, cwd=cwd, timeout=1800
        )
    except FileNotFoundError as exc:
        raise LiteError(f"{what} failed: {cmd[0]} is not installed ({exc})") from exc
    except subprocess.TimeoutExpired as exc:
        raise LiteError(f"{what} timed out after {exc.timeout:.0f}s") from exc
    if proc.returncode != 0:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-4:])
        raise LiteError(f"{what} failed (exit {proc.returncode}): {tail}")
    return proc.stdout


def setup_toolchain(home: Path | None = None, force: bool = False, say: Callable[[str], None] = print) -> Toolchain:
    """Build the isolated Lite toolchain (idempotent: finished steps are skipped)."""
    root = toolchain_dir(home)
    if force and root.exists():
        shutil.rmtree(root)
    existing = _vslim_toolchain(home)
    if existing is not None:
        say(f"Lite toolchain already installed at {root} ({existing.version})")
        return existing
    for tool in ("apt-get", "dpkg"):
        if shutil.which(tool) is None:
            raise LiteError(
                f"`vslim lite setup` needs {tool} (a Debian or Ubuntu host) to fetch Python 3.9; "
                "elsewhere install paddlelite==2.13rc0 under Python <= 3.10 and pass --opt-bin"
            )
    apt, debs, prefix, venv = root / "apt", root / "debs", root / "root", root / "venv"
    libs = prefix / "usr" / "lib" / "x86_64-linux-gnu"
    steps = 6

    say(f"[1/{steps}] Debian bullseye package index (private apt config in {apt}; system sources untouched)")
    for sub in ("lists/partial", "cache/archives/partial"):
        (apt / sub).mkdir(parents=True, exist_ok=True)
    (apt / "sources.list").write_text(APT_SOURCES)
    (apt / "status").touch()
    opts = [
        "-o",
        f"Dir::Etc::SourceList={apt / 'sources.list'}",
        "-o",
        "Dir::Etc::SourceParts=/nonexistent",
        "-o",
        f"Dir::State::Lists={apt / 'lists'}",
        "-o",
        f"Dir::State::status={apt / 'status'}",
        "-o",
        f"Dir::Cache={apt / 'cache'}",
        "-o",
        "APT::Architecture=amd64",
        "-o",
        "Debug::NoLocking=1",
        "-o",
        "APT::Sandbox::User=root",
    ]
    _run(["apt-get", *opts, "-q", "update"], "downloading the Debian bullseye package index from deb.debian.org")

    say(f"[2/{steps}] download {len(DEBIAN_PACKAGES)} Python 3.9 packages")
    debs.mkdir(exist_ok=True)
    _run(["apt-get", *opts, "-q", "download", *DEBIAN_PACKAGES], "downloading the Python 3.9 packages", cwd=debs)

    say(f"[3/{steps}] unpack them into {prefix}")
    prefix.mkdir(exist_ok=True)
    for deb in sorted(debs.glob("*.deb")):
        _run(["dpkg", "-x", str(deb), str(prefix)], f"unpacking {deb.name}")
    python = prefix / "usr" / "bin" / PYTHON
    env = {"LD_LIBRARY_PATH": str(libs)}
    _run([str(python), "-c", "import ssl, ctypes, zlib"], "checking the unpacked Python 3.9", env)

    say(f"[4/{steps}] virtual environment {venv}")
    if not (venv / "bin" / "python").is_file():
        _run(
            [str(python), "-m", "venv", "--without-pip", str(venv)], "creating the Python 3.9 virtual environment", env
        )

    say(f"[5/{steps}] bootstrap pip (a wheel for Python 3.9 fetched by this Python's pip)")
    venv_python = str(venv / "bin" / "python")
    wheels = root / "wheels"
    wheels.mkdir(exist_ok=True)
    if not list(wheels.glob("pip-*.whl")):
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "--only-binary=:all:",
                "--python-version",
                "3.9",
                "--implementation",
                "cp",
                "pip<25",
                "-d",
                str(wheels),
            ],
            "downloading a pip wheel for Python 3.9",
        )
    pip_wheel = str(sorted(wheels.glob("pip-*.whl"))[-1])
    _run([venv_python, f"{pip_wheel}/pip", "install", "-q", "--no-index", pip_wheel], "installing pip", env)

    say(f"[6/{steps}] pip install paddlelite=={LITE_VERSION} 'numpy<2'")
    _run(
        [
            venv_python,
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            f"paddlelite=={LITE_VERSION}",
            "numpy<2",
        ],
        f"installing paddlelite=={LITE_VERSION}",
        env,
    )
    _run([venv_python, "-c", "import paddlelite.lite, numpy"], "importing paddlelite", env)

    tc = Toolchain("vslim", [venv_python, str(venv / "bin" / "paddle_lite_opt")], [venv_python], env, str(root))
    tc.version = _opt_version(tc)
    numpy_version = _run([venv_python, "-c", "import numpy; print(numpy.__version__)"], "reading versions", env).strip()
    (root / "toolchain.json").write_text(
        json.dumps(
            {
                "python": "3.9 (Debian bullseye)",
                "paddlelite": LITE_VERSION,
                "optimizer_version": tc.version,
                "numpy": numpy_version,
            },
            indent=2,
        )
        + "\n"
    )
    say(f"Lite toolchain ready at {root} (optimizer {tc.version})")
    return tc


def doctor(opt_bin: str | None = None, home: Path | None = None) -> dict:
    """What each discovery step finds, for ``vslim lite doctor``."""
    report = {
        "paddlelite_in_this_python": importlib.util.find_spec("paddlelite") is not None,
        "opt_bin": opt_bin or os.environ.get("VSLIM_LITE_OPT"),
        "vslim_toolchain": str(toolchain_dir(home)),
        "vslim_toolchain_installed": (toolchain_dir(home) / "toolchain.json").is_file(),
    }
    try:
        tc = find_toolchain(opt_bin, home)
        report.update(
            found=True,
            source=tc.source,
            location=tc.location,
            optimizer_version=tc.version,
            can_run_nb=tc.python is not None,
        )
        if tc.source == "vslim":
            report["toolchain"] = json.loads((toolchain_dir(home) / "toolchain.json").read_text())
    except LiteError as exc:
        report.update(found=False, error=str(exc))
    return report
