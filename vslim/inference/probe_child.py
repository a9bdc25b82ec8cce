"""The probe's child: loads one model with one set of Paddle settings and runs the seeded sample, in a process
of its own, so a signal from Paddle's C++ core (SIGILL, SIGSEGV) or an out-of-memory kill ends this child and
never the user's process. Run as ``python -m vslim.inference.probe_child SPEC``; the parent is
:mod:`vslim.inference.probe`, which reads the one JSON line this prints.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

from .probe import MAX_RELATIVE_ERROR, MEMORY_BUDGET_MB, OVER_BUDGET_EXIT


def _watch_memory(budget_mb: float) -> None:
    """End this child (exit OVER_BUDGET_EXIT) as soon as its resident memory passes ``budget_mb``."""
    import threading

    page_mb = os.sysconf("SC_PAGE_SIZE") / 2**20

    def watch():
        while True:
            with open("/proc/self/statm") as fh:
                rss_mb = int(fh.read().split()[1]) * page_mb
            if rss_mb > budget_mb:
                os._exit(OVER_BUDGET_EXIT)
            time.sleep(0.02)

    threading.Thread(target=watch, daemon=True).start()


def _child(spec: dict) -> int:
    import numpy as np

    from ..config import PredictorConfig
    from ..errors import VslimError
    from .model_info import seeded_feeds
    from .predictor import PaddlePredictor

    s = spec["settings"]
    config = PredictorConfig(
        threads=spec["threads"],
        precision=spec["precision"],
        ir_optim=s["ir_optim"],
        use_onednn=s["use_onednn"],
        deleted_passes=list(s["deleted_passes"]),
        probe=False,
    )
    if s["use_onednn"]:
        _watch_memory(MEMORY_BUDGET_MB)
    crash = os.environ.get("VSLIM_PROBE_FAULT")  # tests: a real signal in the child, for the named settings
    if crash and crash in (s["name"], "*"):
        os.kill(os.getpid(), signal.SIGILL)
    try:
        predictor = PaddlePredictor(spec["model_dir"], config)
        start = time.perf_counter()
        outputs = predictor.run_feeds(seeded_feeds(predictor.info.inputs))
        run_s = time.perf_counter() - start
        if os.environ.get("VSLIM_PROBE_SKEW") in (s["name"], "*") and not spec.get("save"):
            outputs = {k: v * 1.5 for k, v in outputs.items()}  # tests: a configuration that computes wrongly
        if spec.get("save"):
            np.savez(spec["save"], **{f"out{i}": v for i, v in enumerate(outputs.values())})
        if spec.get("reference"):
            expected = np.load(spec["reference"])
            for i, got in enumerate(outputs.values()):
                ref = expected[f"out{i}"]
                scale = float(np.abs(ref).max()) or 1.0
                error = float(np.abs(got.astype(np.float64) - ref).max()) / scale
                if got.shape != ref.shape or error > MAX_RELATIVE_ERROR:
                    print(
                        json.dumps(
                            {
                                "ok": False,
                                "wrong": True,
                                "error": f"computes the model wrongly here: output {i} differs from the plain "
                                f"kernels' by {error:.2g} of its scale (allowed "
                                f"{MAX_RELATIVE_ERROR:g})",
                            }
                        )
                    )
                    return 1
        finite = all(np.isfinite(v).all() for v in outputs.values() if np.issubdtype(v.dtype, np.floating))
        if not finite:
            print(json.dumps({"ok": False, "error": "the model's outputs are not finite in this configuration"}))
            return 1
    except VslimError as exc:
        skipped = "INT8 on CPU runs on oneDNN" in str(exc)
        print(json.dumps({"ok": False, "error": str(exc), "skipped": skipped}))
        return 1
    import resource

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    print(json.dumps({"ok": True, "peak_rss_mb": round(peak_mb, 1), "run_s": round(run_s, 3)}))
    return 0


if __name__ == "__main__":
    import zlib  # noqa: F401  (before paddle: docs/architecture.md, zlib trap)

    sys.exit(_child(json.loads(sys.argv[1])))
