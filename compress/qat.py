"""Quantization-aware training with PaddleSlim, from trained FP32 (possibly pruned) weights.

The model is wrapped with fake-quant layers (channel-wise abs-max weights,
moving-average activations, Conv2D and Linear by default), fine-tuned with the
shared resumable loop at a low learning rate, and the best epoch is saved as a
QDQ-format INT8 inference model, which runs on oneDNN INT8 kernels like a PTQ
model. The report compares FP32, PTQ (when a PTQ model is given) and QAT, all
evaluated with Paddle Inference on the same validation clips.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import paddle

from vslim.config import PredictorConfig, TrainConfig, to_dict
from vslim.data.lists import read_list
from vslim.data.loader import iter_batches
from vslim.data.pipeline import ClipPipeline
from vslim.dy2static import forget_failed_traces
from vslim.evaluate import collect_outputs, summarize
from vslim.export import INPUT_NAME
from vslim.fit import Checkpoints, Schedule, evaluate_layer, fit
from vslim.fsio import atomic_output_dir, check_output_free, write_json, write_text_atomic
from vslim.inference import PaddlePredictor, inspect_model
from vslim.upstream import quiet_upstream

from .compression_report import qat_markdown
from .config import QATConfig
from .errors import QuantizationError
from .onednn import choose_onednn_int8_ops
from .prune import fold_for_deployment, load_trained

MODEL_PREFIX = "model"


def _defaults(cfg: QATConfig, meta) -> tuple[int, float]:
    base_epochs = (meta.training or {}).get("epochs") or TrainConfig.epochs  # the field's default
    epochs = cfg.epochs or max(2, round(base_epochs / 3))
    lr = cfg.lr or TrainConfig.lr / 10
    return epochs, lr


def quant_config(cfg: QATConfig) -> dict:
    return {
        "weight_quantize_type": cfg.weight_quantize_type,
        "activation_quantize_type": cfg.activation_quantize_type,
        "weight_bits": 8,
        "activation_bits": 8,
        "dtype": "int8",
        "moving_rate": 0.9,
        "quantizable_layer_type": list(cfg.quantizable_layers),
        "onnx_format": True,
    }


def qat(cfg: QATConfig, say: Callable[[str], None] = print) -> dict:
    """Run QAT and write the INT8 inference model, ``vslim.json`` and ``qat_report.{json,md}``.

    PaddleSlim's own logs and warnings stay off unless ``--debug`` (:mod:`vslim.upstream`).
    """
    with quiet_upstream("paddleslim", "paddle.static.quantization"):
        return _qat(cfg, say)


def _qat(cfg: QATConfig, say: Callable[[str], None]) -> dict:
    from paddleslim import QAT

    cfg.validate()
    check_output_free(cfg.output_dir, cfg.overwrite)
    model, meta, arch = load_trained(cfg.weights, cfg.arch)
    fold_for_deployment(model, arch, say)
    pre = meta.preprocess
    pipeline = ClipPipeline(pre)
    train_entries, val_entries = read_list(cfg.train), read_list(cfg.val)
    labels = np.array([e.label for e in val_entries])
    epochs, lr = _defaults(cfg, meta)
    say(f"QAT of {arch}: {epochs} epochs at lr {lr:g} (from {cfg.weights})")
    fp32_logits = evaluate_layer(model, val_entries, pipeline, cfg.batch_size)
    fp32 = summarize(fp32_logits, labels)
    sample, _ = next(iter_batches(train_entries[:4], pipeline, 4))
    model.eval()
    with paddle.no_grad():
        fp32_sample = model(paddle.to_tensor(sample)).numpy()

    paddle.seed(cfg.seed)
    quanter = QAT(config=quant_config(cfg))
    quanter.quantize(model)
    ckpt = Path(cfg.output_dir).parent / f"{Path(cfg.output_dir).name}.checkpoints"
    if ckpt.exists() and not cfg.resume:
        shutil.rmtree(ckpt)
    schedule = Schedule(
        epochs=epochs,
        batch_size=cfg.batch_size,
        lr=lr,
        warmup_epochs=cfg.warmup_epochs,
        seed=cfg.seed,
        workers=cfg.workers,
    )
    result = fit(
        model,
        train_entries,
        val_entries,
        pipeline,
        schedule,
        lambda r: say(
            f"  QAT epoch {r['epoch']}: loss {r['loss']:.3f}, val top-1 (fake-quant) {100 * r['val_top1']:.1f}%"
        ),
        Checkpoints(ckpt),
        desc="QAT",
    )
    model.set_state_dict(result.best_state)
    model.eval()

    shape = [None, pre.frames_per_clip, 3, pre.target_size, pre.target_size]
    with atomic_output_dir(cfg.output_dir, overwrite=cfg.overwrite) as tmp:
        try:
            forget_failed_traces()
            quanter.save_quantized_model(
                model, str(tmp / MODEL_PREFIX), input_spec=[paddle.static.InputSpec(shape, "float32", INPUT_NAME)]
            )
        except Exception as exc:
            raise QuantizationError(f"PaddleSlim could not save the QAT model: {exc}") from exc
        finally:
            paddle.disable_static()
        for extra in tmp.glob(f"{MODEL_PREFIX}.pdiparams.info"):
            extra.unlink()
        info = inspect_model(tmp)
        if not info.quantized:
            raise QuantizationError("the saved QAT model holds no quantize ops; nothing was quantized")
        ops, choice = choose_onednn_int8_ops(tmp, sample, fp32_sample, cfg.threads)
        meta.derive(
            precision="int8",
            model_file=f"{MODEL_PREFIX}.pdmodel",
            params_file=f"{MODEL_PREFIX}.pdiparams",
            input_name=info.inputs[0].name,
            output_name=info.outputs[0].name,
            onednn_int8_ops=ops,
            source=str(cfg.weights),
            quantization={"method": "qat", "epochs": epochs, "lr": lr, **quant_config(cfg)},
        ).save(tmp)
        runners = {"qat": PaddlePredictor(tmp, PredictorConfig(threads=cfg.threads)).run}
        if cfg.ptq_model:
            runners["ptq"] = PaddlePredictor(cfg.ptq_model, PredictorConfig(threads=cfg.threads)).run
        outs, _ = collect_outputs(runners, val_entries, pipeline, cfg.batch_size, "INT8 evaluation")
        results = {"fp32": fp32.to_dict(), "qat": summarize(outs["qat"], labels, fp32_logits).to_dict()}
        if "ptq" in outs:
            results["ptq"] = summarize(outs["ptq"], labels, fp32_logits).to_dict()
        report = {
            "arch": arch,
            "weights": str(cfg.weights),
            "epochs": epochs,
            "lr": lr,
            "validation_clips": len(val_entries),
            "results": results,
            "onednn_int8_ops": ops,
            "op_set_choice": choice,
            "history": result.history,
            "ptq_model": cfg.ptq_model,
            "config": to_dict(cfg),
        }
        write_json(tmp / "qat_report.json", report)
        write_text_atomic(tmp / "qat_report.md", qat_markdown(report))
    shutil.rmtree(ckpt, ignore_errors=True)
    return report
