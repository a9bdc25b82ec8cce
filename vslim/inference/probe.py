"""The first load and run of a model vslim has not seen, in a child process, with fallbacks.

Paddle's C++ core can take the whole process down on a model it has not been tested on:
``SelfAttentionFusePass`` raises SIGILL on a CPU without AVX-512 (TimeSformer), oneDNN refuses
8-D tensors ("could not construct a memory descriptor", VideoSwin's window partition). A
signal cannot be caught in Python, so the first load and one run of such a model happen in a
child process; when that child dies or fails, the next configuration is tried — the offending
fusion passes off, IR optimisation off, oneDNN off — and the first one that loads and runs is
the one every in-process predictor of this model uses on this host. "Runs" means "computes what
the plain kernels compute": a first child runs the seeded sample with oneDNN and IR passes off
(PaddleVideo's own ``predict.py`` default), and a faster configuration whose outputs differ from it
by more than 1e-3 of their scale is refused as wrong — oneDNN's fusions computed PaddleVideo's
TimeSformer with logits off by a fifth of their range, without any error.

The outcome is cached by model content, CPU flags and Paddle version in
``~/.cache/vslim/probes`` (``VSLIM_HOME`` moves it), and packaging copies it into the bundle's
``runtime.json`` so a server never loads a configuration that crashed where it was packaged.
Models vslim exported from its own zoo are not probed: CI runs them on every supported ISA.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import InferenceError
from ..fsio import sha256_of, write_json
from .cache import cache_home
from .cpu import cpu_flags

PROBE_TIMEOUT_S = 600.0
# A oneDNN configuration that needs more memory than this for one clip is stopped and the settings without
# oneDNN are tried: oneDNN keeps blocked copies of activations (a 250-image PP-TSN R50 clip: 9.3 GB with it,
# 3.5 GB without, measured; PaddleVideo's predict.py runs without it by default). Without oneDNN no limit
# applies: it is the leanest Paddle has.
MEMORY_BUDGET_MB = float(os.environ.get("VSLIM_MEMORY_BUDGET_MB", 6000))
OVER_BUDGET_EXIT = 3
# the fusion passes measured to crash or fail on CPUs they were not built for (SIGILL without AVX-512)
FRAGILE_PASSES = (
    "self_attention_fuse_pass",
    "multihead_matmul_fuse_pass_v2",
    "multihead_matmul_fuse_pass_v3",
    "fused_multi_transformer_encoder_pass",
    "fc_mkldnn_pass",
)


@dataclass(frozen=True)
class Settings:
    """The Paddle Inference knobs a fallback turns; the default is what vslim runs normally."""

    name: str
    ir_optim: bool = True
    use_onednn: bool = True
    deleted_passes: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "ir_optim": self.ir_optim,
            "use_onednn": self.use_onednn,
            "deleted_passes": list(self.deleted_passes),
        }


REFERENCE = Settings("plain kernels", ir_optim=False, use_onednn=False)
MAX_RELATIVE_ERROR = 1e-3  # of the output's scale: correct configurations agree to ~1e-6 (PP-TSM R50, measured)
ATTEMPTS = (
    Settings("default"),
    Settings("fragile fusion passes off", deleted_passes=FRAGILE_PASSES),
    Settings("IR optimisation off", ir_optim=False),
    Settings("oneDNN off", use_onednn=False),
    Settings("oneDNN and IR optimisation off", ir_optim=False, use_onednn=False),
)


@dataclass
class Attempt:
    settings: dict
    status: str  # ok, crashed (a signal), failed (an error), wrong (runs, but not as the plain kernels), over
    # budget (memory), skipped (cannot apply to this model)
    reason: str = ""
    seconds: float = 0.0
    peak_rss_mb: float | None = None  # the child's peak memory for one clip (ok attempts)
    run_s: float | None = None  # its first run of one clip


@dataclass
class ProbeResult:
    chosen: dict | None
    attempts: list[Attempt] = field(default_factory=list)
    host: dict = field(default_factory=dict)
    cached: bool = False  # answered from the cache: the user was told about the fallback when it was found

    @property
    def fell_back(self) -> bool:
        return bool(self.chosen and self.chosen["name"] != "default")

    def summary(self) -> str:
        tried = "; ".join(
            f"{a.settings['name']}: {a.status}" + (f" ({a.reason})" if a.reason else "")
            for a in self.attempts
            if a.status != "ok"
        )
        return tried

    def to_dict(self) -> dict:
        return {"chosen": self.chosen, "attempts": [asdict(a) for a in self.attempts], "host": self.host}


def _host() -> dict:
    import paddle

    flags = sorted(
        cpu_flags()
        & {
            "avx",
            "avx2",
            "avx512f",
            "avx512bw",
            "avx512_vnni",
            "avx_vnni",
            "avx512_bf16",
            "amx_bf16",
            "amx_int8",
            "fma",
        }
    )
    return {"flags": flags, "paddle": paddle.__version__}


def _cache_file(model_file: Path, params_file: Path, host: dict) -> Path:
    h = hashlib.sha256()
    for path in (model_file, params_file):
        h.update(sha256_of(path).encode())
    h.update(json.dumps(host, sort_keys=True).encode())
    return cache_home() / "probes" / f"{h.hexdigest()[:20]}.json"


def describe_signal(returncode: int) -> str:
    """What a child killed by ``-returncode`` means, in words a user can act on."""
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    meaning = {
        "SIGILL": "an instruction this CPU lacks (a kernel or pass built for a newer ISA)",
        "SIGSEGV": "a memory fault inside Paddle's C++ core",
        "SIGABRT": "Paddle's C++ core aborted",
        "SIGFPE": "an arithmetic fault inside Paddle's C++ core",
        "SIGKILL": "killed from outside, most likely by the kernel for lack of memory (a batch of 1 of this "
        "model did not fit)",
        "SIGBUS": "a bus error inside Paddle",
    }
    return f"killed by {name}: {meaning.get(name, 'a crash inside Paddle')}"


def _child_command(
    model_dir: Path, settings: Settings, precision: str, threads: int, reference: Path | None, save: Path | None
) -> list[str]:
    spec = json.dumps(
        {
            "model_dir": str(model_dir),
            "settings": settings.to_dict(),
            "precision": precision,
            "threads": threads,
            "reference": str(reference) if reference else None,
            "save": str(save) if save else None,
        }
    )
    return [sys.executable, "-m", "vslim.inference.probe_child", spec]


def _try(
    model_dir: Path,
    settings: Settings,
    precision: str,
    threads: int,
    reference: Path | None = None,
    save: Path | None = None,
) -> Attempt:
    start = time.perf_counter()
    env = dict(os.environ, VSLIM_PROBE_CHILD="1")
    try:
        proc = subprocess.run(
            _child_command(model_dir, settings, precision, threads, reference, save),
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_S,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return Attempt(
            settings.to_dict(), "failed", f"no answer in {PROBE_TIMEOUT_S:.0f} s", time.perf_counter() - start
        )
    seconds = time.perf_counter() - start
    if proc.returncode < 0:
        return Attempt(settings.to_dict(), "crashed", describe_signal(proc.returncode), seconds)
    if proc.returncode == OVER_BUDGET_EXIT:
        return Attempt(
            settings.to_dict(),
            "over budget",
            f"needs more than {MEMORY_BUDGET_MB / 1024:.1f} GB for "
            "one clip with oneDNN (VSLIM_MEMORY_BUDGET_MB raises the limit)",
            seconds,
        )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    answer = json.loads(lines[-1]) if lines else {}
    if proc.returncode == 0 and answer.get("ok"):
        return Attempt(settings.to_dict(), "ok", "", seconds, answer.get("peak_rss_mb"), answer.get("run_s"))
    reason = answer.get("error") or (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
    status = "skipped" if answer.get("skipped") else "wrong" if answer.get("wrong") else "failed"
    return Attempt(settings.to_dict(), status, reason[:400], seconds)


def probe(
    model_dir: Path | str,
    model_file: Path,
    params_file: Path,
    precision: str = "auto",
    threads: int = 2,
    say: Callable[[str], None] = lambda _: None,
    use_cache: bool = True,
) -> ProbeResult:
    """The first configuration that loads and runs the model in a child process (cached per host)."""
    host = _host()
    cache = _cache_file(model_file, params_file, host)
    if use_cache and cache.is_file():
        try:
            data = json.loads(cache.read_text())
            return ProbeResult(data["chosen"], [Attempt(**a) for a in data["attempts"]], data["host"], cached=True)
        except (json.JSONDecodeError, KeyError, TypeError):
            pass  # a damaged cache entry: probe again
    say(
        f"  first run of {model_dir} on this host: loading it in a separate process (a crash there cannot "
        "take this one down)"
    )
    result = ProbeResult(None, [], host)
    with tempfile.TemporaryDirectory(prefix="vslim-probe-") as work:
        reference = _reference(
            Path(model_dir), model_file, precision, threads, Path(work) / "reference.npz", result, say
        )
        _attempts(Path(model_dir), precision, threads, reference, result, say)
    write_json(cache, result.to_dict())
    return result


def _reference(
    model_dir: Path, model_file: Path, precision: str, threads: int, path: Path, result: ProbeResult, say
) -> Path | None:
    """The plain kernels' outputs on the seeded sample (no oneDNN, no IR passes): what every faster
    configuration must reproduce. Fusion passes have computed models wrongly (TimeSformer under oneDNN
    with IR optimisation: logits off by 0.29 of 1.56, measured), which a crash check alone would miss."""
    from .program import is_quantized, parse_program

    if precision == "int8" or (precision == "auto" and is_quantized(parse_program(model_file))):
        return None  # INT8 runs only on oneDNN: nothing plainer to compare with
    attempt = _try(model_dir, REFERENCE, precision, threads, save=path)
    attempt.settings["role"] = "reference"
    result.attempts.append(attempt)
    if attempt.status != "ok":
        say(
            f"  plain kernels (the reference): {attempt.status} — {attempt.reason}; configurations are checked "
            "for crashes only"
        )
        return None
    return path


def _attempts(model_dir: Path, precision: str, threads: int, reference: Path | None, result: ProbeResult, say) -> None:
    over_budget = False
    for settings in ATTEMPTS:
        if over_budget and settings.use_onednn:
            continue  # oneDNN's copies of the activations did not fit: only settings without it can
        attempt = _try(model_dir, settings, precision, threads, reference=reference)
        result.attempts.append(attempt)
        if attempt.status == "ok":
            result.chosen = settings.to_dict()
            break
        say(f"  {settings.name}: {attempt.status} — {attempt.reason}")
        if "SIGKILL" in attempt.reason:
            break  # out of memory: every other configuration needs as much; say so instead of trying them
        if attempt.status == "over budget":
            over_budget = True


def reference_in_child(model_dir, info, probed: dict | None, threads: int) -> dict:
    """Paddle's outputs on ``seeded_feeds(info.inputs)`` with the probed settings, computed in a child process,
    so the caller never holds a large clip's Paddle buffers (Paddle's allocator keeps them for reuse: a
    250-image clip's run left a process at 4.8 GB for the rest of its life, measured)."""
    import numpy as np

    chosen = probed or {"name": "default"}
    settings = Settings(
        chosen["name"],
        chosen.get("ir_optim", True),
        chosen.get("use_onednn", True),
        tuple(chosen.get("deleted_passes", ())),
    )
    with tempfile.TemporaryDirectory(prefix="vslim-reference-") as work:
        path = Path(work) / "reference.npz"
        attempt = _try(Path(model_dir), settings, info.precision, threads, save=path)
        if attempt.status != "ok":
            from ..errors import VslimError

            raise VslimError(f"Paddle could not compute the reference outputs of {model_dir}: {attempt.reason}")
        saved = np.load(path)
        return {spec.name: saved[f"out{i}"] for i, spec in enumerate(info.outputs)}


def needs_probe(meta) -> bool:
    """Models of vslim's own zoo (``vslim.json`` naming a zoo architecture) run the configuration CI tests on
    every supported ISA; anything else — PaddleVideo's exports, other families — is probed first."""
    from ..models.zoo import ARCHS

    if os.environ.get("VSLIM_PROBE_CHILD"):
        return False  # inside a probe: this is the isolated load
    return not (meta is not None and meta.arch in ARCHS)


def recorded_settings(model_dir) -> dict | None:
    """The Paddle settings a bundle's ``runtime.json`` recorded at packaging, or None."""
    path = Path(model_dir) / "runtime.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text()).get("paddle_settings")
    except (json.JSONDecodeError, AttributeError):
        return None


def unusable(result: ProbeResult, model_dir) -> InferenceError:
    if result.attempts and "SIGKILL" in result.attempts[-1].reason:
        return InferenceError(
            f"{model_dir} does not fit in this machine's memory for one clip: "
            f"{result.attempts[-1].reason}; free memory or use a machine with more"
        )
    return InferenceError(
        f"Paddle Inference cannot run {model_dir} on this host in any configuration tried: "
        f"{result.summary()}. Try another runtime (--runtime onnxruntime or openvino)"
    )
