"""What a benchmark ran on: numbers without the machine are not figures."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = (
    "paddlepaddle",
    "paddlepaddle-gpu",
    "paddleslim",
    "paddle2onnx",
    "onnxruntime",
    "numpy",
    "opencv-python",
    "grpcio",
    "protobuf",
    "fastapi",
    "uvicorn",
)
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "fma", "f16c")


def cpu_info() -> dict:
    model, flags = platform.processor() or "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("unknown", "", "x86_64"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    return {"model": model, "logical_cores": os.cpu_count(), "flags": {f: f in flags for f in CPU_FLAGS}}


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            cwd=Path(__file__).resolve().parent,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain"],
            capture_output=True,
            text=True,
            timeout=10,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        return None


def gpu_info() -> dict:
    try:
        import paddle

        if paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0:
            return {"available": True, "name": paddle.device.cuda.get_device_name(0)}
        return {
            "available": False,
            "reason": "this Paddle build has no CUDA"
            if not paddle.device.is_compiled_with_cuda()
            else "no GPU visible",
        }
    except Exception as exc:  # paddle missing or broken: still report the rest
        return {"available": False, "reason": str(exc)}


def process_memory_mib(pid: int) -> dict[str, float]:
    """A running process's resident memory now (``rss``) and its peak so far (``peak``), from
    ``/proc/PID/status`` (VmRSS, VmHWM); NaN where the kernel does not say."""
    found = {"rss": float("nan"), "peak": float("nan")}
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        key = {"VmRSS:": "rss", "VmHWM:": "peak"}.get(line.split(maxsplit=1)[0] if line else "")
        if key:
            found[key] = round(int(line.split()[1]) / 1024, 1)
    return found


def peak_rss_mib() -> dict:
    """Peak resident memory so far: this process, and the largest child it has waited for (servers,
    probes). Linux reports KiB."""
    import resource

    return {
        "self": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "largest_child": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
    }


def environment() -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    from vslim import __version__

    return {
        "timestamp": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "vslim": __version__,
        "git_commit": _git_commit(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_info(),
        "gpu": gpu_info(),
        "packages": versions,
        "peak_rss_mib": peak_rss_mib(),
        "env": {
            k: os.environ[k]
            for k in ("OMP_NUM_THREADS", "OPENBLAS_CORETYPE", "CUDA_VISIBLE_DEVICES")
            if k in os.environ
        },
    }


def environment_lines(env: dict) -> list[str]:
    """The machine, software, time and peak memory of a report's environment, as Markdown list items."""
    cpu = env["cpu"]
    flags = ", ".join(f for f, on in cpu["flags"].items() if on) or "-"
    pk = env["packages"]
    return [
        f"- Machine: {cpu['model']}, {cpu['logical_cores']} logical cores, flags: {flags}; "
        f"GPU: {env['gpu'].get('name') or 'none (' + env['gpu'].get('reason', '') + ')'}",
        f"- Software: Python {env['python']}, paddle {pk.get('paddlepaddle') or pk.get('paddlepaddle-gpu')}, "
        f"onnxruntime {pk.get('onnxruntime', '-')}, vslim {env['vslim']} ({env['git_commit']})",
        f"- When: {env['timestamp']}",
    ] + (
        [
            f"- Peak memory (RSS): this process {env['peak_rss_mib']['self']:.0f} MiB, largest child process "
            f"{env['peak_rss_mib']['largest_child']:.0f} MiB"
        ]
        if env.get("peak_rss_mib")
        else []
    )
