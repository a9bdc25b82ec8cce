"""Structured filter pruning with PaddleSlim, for zoo models, ending in weights and an inference model.

Steps: load the trained weights; find the convs that can be pruned (the rest are
listed with the reason); choose per-layer ratios (one ratio for all, or ratios
reaching a FLOPs target, optionally from a per-layer sensitivity analysis);
prune; fine-tune (resumable); write the pruned weights (their ``vslim.json``
holds the plan, so QAT and export rebuild the shapes), the pruned inference
model, and a report of params, FLOPs, accuracy and latency before and after.
"""

from __future__ import annotations

import copy
import functools
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import paddle

from vslim.config import PredictorConfig, to_dict
from vslim.data.lists import read_list
from vslim.data.pipeline import ClipPipeline
from vslim.errors import ConfigError, ModelError
from vslim.export import export_model
from vslim.fit import Checkpoints, Schedule, accuracy, fit
from vslim.fsio import atomic_output_dir, check_output_free, write_json, write_text_atomic
from vslim.inference import PaddlePredictor
from vslim.model_meta import load_meta
from vslim.models import build_model, get_arch
from vslim.models.pruning import analyse, apply_plan, flops, param_count, prune
from vslim.models.weights import load_weights, read_state_dict
from vslim.timing import median_ms
from vslim.upstream import quiet_upstream

from .compression_report import prune_markdown
from .config import PruneConfig

MAX_RATIO = 0.9
WEIGHTS_DIR, INFERENCE_DIR = "weights", "inference"


def load_trained(weights: Path | str, arch: str | None):
    """A zoo model with trained (possibly already pruned) weights, and its metadata."""
    weights = Path(weights)
    meta = load_meta(weights.parent) if weights.is_file() else None
    arch = arch or (meta.arch if meta else None)
    if not arch:
        raise ModelError(f"no architecture known for {weights}: pass --arch")
    if meta is None:
        raise ModelError(
            f"{weights} has no vslim.json beside it (labels, preprocessing): train it with "
            "`vslim train` or export it first"
        )
    state = read_state_dict(weights)
    spec = get_arch(arch)
    model = build_model(arch, meta.num_classes, meta.preprocess.num_seg)
    if meta.pruning:
        apply_plan(model, meta.pruning, fold=spec.before_export)
    load_weights(model, state, str(weights), classifier=spec.classifier)
    return model, meta, arch


def fold_for_deployment(model, arch: str, say: Callable[[str], None]) -> bool:
    """Fold training-only structure (PP-TSMv2's re-parameterised branches) before pruning or QAT, so
    what is pruned or quantized is the deployed graph. True when the model changed."""
    fold = get_arch(arch).before_export
    if fold is None:
        return False
    fold(model)
    say(f"  {arch}: re-parameterised branches folded first (what is deployed is what is compressed)")
    return True


def _uniform(layers: list[str], r: float) -> dict[str, float]:
    return {name: r for name in layers}


def _reduction(model, ratios: dict, shape: list[int], criterion: str, base: int) -> float:
    trial = copy.deepcopy(model)
    prune(trial, ratios, shape, criterion)
    return 1 - flops(trial, shape) / base


def _search(ratios_for: Callable[[float], dict], lo: float, hi: float, target: float, reduction) -> dict:
    """Smallest setting of a monotone knob whose pruning removes at least ``target`` of the FLOPs."""
    for _ in range(12):
        mid = (lo + hi) / 2
        if reduction(ratios_for(mid)) >= target:
            hi = mid
        else:
            lo = mid
    return ratios_for(hi)


def sensitivity(
    model, layers: list[str], entries, pipeline, shape, criterion: str, ratios: list[float], say: Callable[[str], None]
) -> dict[str, dict[str, float]]:
    """Top-1 drop on ``entries`` when each layer alone is pruned by each ratio."""
    base = accuracy(model, entries, pipeline)
    result: dict[str, dict[str, float]] = {}
    for i, name in enumerate(layers, start=1):
        result[name] = {}
        for r in ratios:
            trial = copy.deepcopy(model)
            prune(trial, {name: r}, shape, criterion)
            result[name][str(r)] = base - accuracy(trial, entries, pipeline)
        say(
            f"  sensitivity {i}/{len(layers)} {name}: "
            + ", ".join(f"{r}: {100 * d:+.1f}" for r, d in result[name].items())
        )
    return result


def _ratios_at_loss(sens: dict, threshold: float) -> dict[str, float]:
    """Per layer, the largest measured-or-interpolated ratio whose accuracy drop stays within ``threshold``."""
    out = {}
    for name, curve in sens.items():
        points = [(0.0, 0.0)] + sorted((float(r), d) for r, d in curve.items())
        best = 0.0
        for (r0, d0), (r1, d1) in zip(points, points[1:]):
            if d1 <= threshold:
                best = r1
            elif d0 <= threshold < d1:
                best = r0 + (r1 - r0) * (threshold - d0) / (d1 - d0)
                break
            else:
                break
        out[name] = round(best, 4)
    return out


def _plot_sensitivity(sens: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, curve in sens.items():
        rs = [0.0] + [float(r) for r in curve]
        ax.plot(
            rs,
            [0.0] + [100 * d for d in curve.values()],
            marker="o",
            label=name.replace("backbone.", "").replace("._conv.weight", ""),
        )
    ax.set_xlabel("pruned filter ratio")
    ax.set_ylabel("top-1 drop (points)")
    ax.set_title("Per-layer pruning sensitivity")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def prune_model(cfg: PruneConfig, say: Callable[[str], None] = print) -> dict:
    """Prune, fine-tune and write weights, inference model and ``prune_report.{json,md}``.

    PaddleSlim's own logs stay off unless ``--debug`` (:mod:`vslim.upstream`).
    """
    with quiet_upstream("paddleslim.dygraph"):
        return _prune_model(cfg, say)


def _prune_model(cfg: PruneConfig, say: Callable[[str], None]) -> dict:
    cfg.validate()
    check_output_free(cfg.output_dir, cfg.overwrite)
    model, meta, arch = load_trained(cfg.weights, cfg.arch)
    folded = fold_for_deployment(model, arch, say)
    pre = meta.preprocess
    shape = [1, pre.frames_per_clip, 3, pre.target_size, pre.target_size]
    pipeline = ClipPipeline(pre)
    train_entries, val_entries = read_list(cfg.train), read_list(cfg.val)
    layers = analyse(model, shape)
    if not layers.prunable:
        raise ModelError(f"no convolution of {arch} can be pruned here; excluded: {layers.excluded}")
    say(f"{len(layers.prunable)} prunable convs; {len(layers.excluded)} excluded")
    if get_arch(arch).pruning_notes:
        say(f"  {arch}: {get_arch(arch).pruning_notes}")
    base_flops, base_params = flops(model, shape), param_count(model)
    base_top1 = accuracy(model, val_entries, pipeline)
    reduction = lambda ratios: _reduction(model, ratios, shape, cfg.criterion, base_flops)  # noqa: E731

    sens = None
    if cfg.sensitivity:
        say("sensitivity analysis (each prunable conv alone, on the validation list)")
        sens = sensitivity(
            model,
            layers.prunable,
            val_entries[: cfg.sensitivity_clips],
            pipeline,
            shape,
            cfg.criterion,
            cfg.sensitivity_ratios,
            say,
        )
    if cfg.ratio is not None:
        ratios = _uniform(layers.prunable, cfg.ratio)
    elif cfg.flops_target is not None:
        ceiling = _ratios_at_loss(sens, 1.0) if sens else _uniform(layers.prunable, MAX_RATIO)
        best_possible = reduction(ceiling)
        if best_possible < cfg.flops_target:
            raise ConfigError(
                f"FLOPs target {100 * cfg.flops_target:.0f}% cannot be reached: pruning every prunable conv "
                f"{'at its largest measured ratio' if sens else f'by {MAX_RATIO:.0%}'} removes "
                f"{100 * best_possible:.1f}% (the excluded convs and the head keep the rest)"
            )
        if sens:
            top = max(d for curve in sens.values() for d in curve.values())
            ratios = _search(lambda t: _ratios_at_loss(sens, t), 0.0, max(top, 1e-6), cfg.flops_target, reduction)
        else:
            ratios = _search(lambda r: _uniform(layers.prunable, r), 0.0, MAX_RATIO, cfg.flops_target, reduction)
    else:  # PruneConfig.validate() refuses this
        raise ConfigError("give exactly one of --ratio (filters to prune per layer) and --flops-target")
    ratios = {k: v for k, v in ratios.items() if v > 0}

    unpruned_for_latency = copy.deepcopy(model)
    prune(model, ratios, shape, cfg.criterion)
    pruned_flops, pruned_params = flops(model, shape), param_count(model)
    pruned_top1 = accuracy(model, val_entries, pipeline)
    say(
        f"pruned: FLOPs -{100 * (1 - pruned_flops / base_flops):.1f}%, params "
        f"-{100 * (1 - pruned_params / base_params):.1f}%, top-1 {100 * base_top1:.1f}% -> {100 * pruned_top1:.1f}%"
    )

    history = []
    best_state = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    finetuned_top1: float | None = pruned_top1
    if cfg.finetune_epochs:
        ckpt = Path(cfg.output_dir).parent / f"{Path(cfg.output_dir).name}.checkpoints"
        if ckpt.exists() and not cfg.resume:
            shutil.rmtree(ckpt)
        schedule = Schedule(
            epochs=cfg.finetune_epochs,
            batch_size=cfg.batch_size,
            lr=cfg.lr,
            warmup_epochs=0.5,
            seed=cfg.seed,
            workers=cfg.workers,
        )
        result = fit(
            model,
            train_entries,
            val_entries,
            pipeline,
            schedule,
            lambda r: say(f"  fine-tune epoch {r['epoch']}: val top-1 {100 * r['val_top1']:.1f}%"),
            Checkpoints(ckpt),
            desc="fine-tune",
        )
        history, best_state, finetuned_top1 = result.history, result.best_state, result.best_score

    plan: dict[str, Any] = {"criterion": cfg.criterion, "input_shape": shape, "ratios": ratios}
    if folded:
        plan["folded"] = True
    with atomic_output_dir(cfg.output_dir, overwrite=cfg.overwrite) as tmp:
        (tmp / WEIGHTS_DIR).mkdir()
        paddle.save(best_state, str(tmp / WEIGHTS_DIR / "model.pdparams"))
        meta.derive(
            pruning=plan,
            training={
                "finetune_epochs": cfg.finetune_epochs,
                "best_val_top1": finetuned_top1,
                "source_weights": str(cfg.weights),
            },
        ).save(tmp / WEIGHTS_DIR)
        export_model(tmp / WEIGHTS_DIR / "model.pdparams", tmp / INFERENCE_DIR)
        with tempfile.TemporaryDirectory(prefix="vslim-prune-") as scratch:
            unpruned_dir = Path(scratch)
            paddle.save(
                {k: v.numpy() for k, v in unpruned_for_latency.state_dict().items()},
                str(unpruned_dir / "model.pdparams"),
            )
            # the unpruned model was folded too: its weights load only into the folded form
            (meta.derive(pruning={"folded": True, "ratios": {}, "input_shape": shape}) if folded else meta).save(
                unpruned_dir
            )
            export_model(unpruned_dir / "model.pdparams", unpruned_dir / "inference")
            latency = _latency(unpruned_dir / "inference", tmp / INFERENCE_DIR, shape)
            sizes = {"before_bytes": _size(unpruned_dir / "inference"), "after_bytes": _size(tmp / INFERENCE_DIR)}
        report = {
            "arch": arch,
            "weights": str(cfg.weights),
            "criterion": cfg.criterion,
            "mode": ("ratio" if cfg.ratio is not None else "flops_target") + (" + sensitivity" if sens else ""),
            "flops": {"before": base_flops, "after": pruned_flops, "reduction": 1 - pruned_flops / base_flops},
            "params": {"before": base_params, "after": pruned_params, "reduction": 1 - pruned_params / base_params},
            "top1": {"before": base_top1, "after_pruning": pruned_top1, "after_finetune": finetuned_top1},
            "latency_ms": latency,
            "inference_model": sizes,
            "ratios": ratios,
            "excluded": layers.excluded,
            "finetune_history": history,
            "config": to_dict(cfg),
        }
        write_json(tmp / "prune_report.json", report)
        if sens:
            write_json(tmp / "sensitivity.json", sens)
            _plot_sensitivity(sens, tmp / "sensitivity.png")
        write_text_atomic(tmp / "prune_report.md", prune_markdown(report))
    ckpt_dir = Path(cfg.output_dir).parent / f"{Path(cfg.output_dir).name}.checkpoints"
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    return report


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("model.*") if p.is_file())


def _latency(before: Path, after: Path, shape: list[int]) -> dict:
    """Median ms per call at batch 1 and batch 8, 2 threads, oneDNN."""
    out: dict[str, float] = {"threads": 2}
    for batch in (1, 8):
        x = np.random.default_rng(0).standard_normal([batch, *shape[1:]]).astype(np.float32)
        for name, folder in (("before", before), ("after", after)):
            pred = PaddlePredictor(folder, PredictorConfig(threads=2))
            out[f"{name}_batch{batch}"] = median_ms(functools.partial(pred.run, x), 20, 3)
    return out
