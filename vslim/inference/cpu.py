"""What this CPU offers, from ``/proc/cpuinfo``: the ISA flags that decide which runtime and precision win.

On an AVX-512 VNNI host Paddle's oneDNN INT8 led, on an AMX host OpenVINO's BF16 did (docs/architecture.md,
CPU runtimes), so choices are measured per host and every report names the CPU and these flags.
"""

from __future__ import annotations

import platform

from ..errors import ConfigError

BF16_FLAGS = ("avx512_bf16", "amx_bf16")
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
REPORTED_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", *BF16_FLAGS, "amx_int8")


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def has_bf16() -> bool:
    """BF16 arithmetic in hardware (AVX-512 BF16 or AMX); emulated BF16 would only be slower."""
    return bool(cpu_flags() & set(BF16_FLAGS))


def require_bf16() -> None:
    """A ConfigError naming the flags when this CPU cannot run BF16."""
    if not has_bf16():
        raise ConfigError(
            f"this CPU has no BF16 instructions ({' or '.join(BF16_FLAGS)} in /proc/cpuinfo); use precision fp32 or int8"
        )


def has_vnni() -> bool:
    return bool(cpu_flags() & set(VNNI_FLAGS))


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            return next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), "unknown")
    except OSError:
        return platform.processor() or "unknown"
