"""Markdown renderings of compression reports (the JSON twin holds every figure)."""

from __future__ import annotations

from vslim.tables import fmt, markdown_table, mib, pct

from .onednn import describe_op_set

# Below this much FP32 weight a model's convolutions are small: the small zoo PP-TSM carries 0.5 MiB,
# PP-TSM R50 about 93 MiB (where oneDNN INT8 measured about 3x faster than FP32, docs/architecture.md).
SMALL_MODEL_BYTES = 20 * 2**20


def int8_speed_note(r: dict) -> str | None:
    """One sentence on INT8 vs FP32 latency; when INT8 is not faster, the measured fact and its likely cause."""
    lat = r.get("latency_ms") or {}
    fp32, int8 = lat.get("fp32"), lat.get("int8")
    if not fp32 or not int8:
        return None
    where = f"batch {lat.get('batch', 1)}, {lat.get('threads')} threads"
    if int8 < fp32:
        return f"INT8 runs {fp32 / int8:.2f}x faster than FP32 ({where})."
    fact = (
        f"INT8 is not faster than FP32 on this model: measured {int8:.2f} ms vs {fp32:.2f} ms ({where}; "
        f"INT8 takes {int8 / fp32:.2f}x the FP32 time)."
    )
    weights = (r.get("fp32") or {}).get("params_bytes") or 0
    qdq = (r.get("int8") or {}).get("quant_dequant_ops")
    if lat.get("cpu_int8_instructions") == []:
        cause = (
            "Likely cause: this CPU has no VNNI or AMX instructions, so oneDNN's INT8 kernels save little "
            "and the quantize/dequantize steps INT8 adds cost time; INT8 pays on CPUs with AVX-512 VNNI, "
            "AVX-VNNI or AMX."
        )
    elif weights and weights < SMALL_MODEL_BYTES:
        steps = f"the {qdq} quantize/dequantize ops" if qdq else "the quantize/dequantize ops"
        cause = (
            f"Likely cause: the model is small ({mib(weights)} of FP32 weights), so its convolutions are too "
            f"small for INT8 kernels to win back the cost of {steps} INT8 adds; INT8 pays on ResNet-50-sized "
            "models (PP-TSM R50, about 93 MiB: about 3x faster than FP32 at batch 1 on oneDNN, "
            "docs/architecture.md)."
        )
    else:
        cause = (
            "The model is not small, so the cause is not the quantize/dequantize overhead alone: measure "
            "with `vslim bench runtime` on the deployment CPU before choosing INT8 for speed."
        )
    return f"{fact} {cause}"


def ptq_markdown(r: dict) -> str:
    fp32_val = (r["fp32"] or {}).get("val") or {}
    lines = [
        "# Post-training quantization report\n",
        f"- FP32 model: `{r['fp32_model']}`",
        f"- INT8 model: `{r['int8_model']}` (algorithm **{r['algo']}**, mode {r['mode']})",
        f"- Calibration clips: {r['calibration_clips']}; validation clips: {r['validation_clips']}",
        f"- oneDNN INT8 ops: {describe_op_set(r['int8']['onednn_int8_ops'])}",
        "",
    ]
    int8 = r["int8"]
    val = int8.get("val") or {}
    lat = r["latency_ms"] or {}
    calib = int8.get("calib") or {}
    fp32 = r["fp32"]
    rows = [
        [
            "FP32",
            pct(fp32_val.get("top1")),
            pct(fp32_val.get("top5")),
            "-",
            "-",
            mib(fp32["params_bytes"]),
            mib(fp32["total_bytes"]),
            fmt(lat.get("fp32")),
            "-",
        ],
        [
            f"INT8 ({r['algo']})",
            pct(val.get("top1")),
            pct(val.get("top5")),
            pct(val.get("agreement")),
            fmt(calib.get("cosine_mean"), 4),
            mib(int8["params_bytes"]),
            mib(int8["total_bytes"]),
            fmt(lat.get("int8")),
            f"{int8['seconds']:.1f}",
        ],
    ]
    threads = f", {lat['threads']} threads" if lat else ""
    lines.append(
        markdown_table(
            [
                "model",
                "top-1",
                "top-5",
                "top-1 agreement",
                "calib cosine",
                "weights",
                "weights + program",
                f"latency ms (batch 1{threads})",
                "PTQ time s",
            ],
            rows,
        )
    )
    lines.append(
        f"\nWeights {fp32['params_bytes'] / int8['params_bytes']:.2f}x smaller; weights + program "
        f"{fp32['total_bytes'] / int8['total_bytes']:.2f}x smaller (the program grows by its quantize/dequantize ops)."
    )
    note = int8_speed_note(r)
    if note:
        lines.append(f"\n{note}")
    if len(r["candidates"]) > 1:
        lines.append("\n## Candidates\n")
        crows = []
        for c in r["candidates"]:
            v = c.get("val") or {}
            crows.append(
                [
                    c["algo"],
                    pct(v.get("top1")),
                    pct(v.get("agreement")),
                    f"{c['calib']['cosine_mean']:.4f}",
                    f"{c['seconds']:.1f}",
                    c["within_tolerance"],
                    "yes" if c["algo"] == r["algo"] else "",
                ]
            )
        lines.append(
            markdown_table(
                ["algo", "top-1", "agreement", "calib cosine", "time s", "within tolerance", "chosen"], crows
            )
        )
    for failed in r.get("failed_candidates") or []:
        lines.append(f"\n- {failed['algo']}: could not be calibrated ({failed['error']})")
    return "\n".join(lines) + "\n"


def qat_markdown(r: dict) -> str:
    res = r["results"]
    rows = [["FP32", pct(res["fp32"]["top1"]), pct(res["fp32"]["top5"]), "-"]]
    if "ptq" in res:
        rows.append(["INT8 (PTQ)", pct(res["ptq"]["top1"]), pct(res["ptq"]["top5"]), pct(res["ptq"]["agreement"])])
    rows.append(["INT8 (QAT)", pct(res["qat"]["top1"]), pct(res["qat"]["top5"]), pct(res["qat"]["agreement"])])
    lines = [
        "# Quantization-aware training report\n",
        f"- Weights: `{r['weights']}` ({r['arch']}); {r['epochs']} epochs at lr {r['lr']:g}",
        f"- Validation clips: {r['validation_clips']}; oneDNN INT8 ops: {describe_op_set(r['onednn_int8_ops'])}",
        "- INT8 figures come from Paddle Inference running the saved models (oneDNN INT8 kernels).",
        "",
        markdown_table(["model", "top-1", "top-5", "top-1 agreement with FP32"], rows),
        "\n## Epochs\n",
        markdown_table(
            ["epoch", "loss", "train top-1 (fake-quant)", "val top-1 (fake-quant)"],
            [[h["epoch"], f"{h['loss']:.3f}", pct(h["train_top1"]), pct(h.get("val_top1"))] for h in r["history"]],
        ),
    ]
    return "\n".join(lines) + "\n"


def prune_markdown(r: dict) -> str:
    f, p, t, lat, size = r["flops"], r["params"], r["top1"], r["latency_ms"], r["inference_model"]
    lines = [
        "# Pruning report\n",
        f"- Weights: `{r['weights']}` ({r['arch']}); criterion {r['criterion']}; mode {r['mode']}",
        "",
        markdown_table(
            ["", "before", "after", "change"],
            [
                [
                    "FLOPs (clip)",
                    f"{f['before'] / 1e6:.1f} M",
                    f"{f['after'] / 1e6:.1f} M",
                    f"-{100 * f['reduction']:.1f}%",
                ],
                [
                    "parameters",
                    f"{p['before'] / 1e3:.1f} k",
                    f"{p['after'] / 1e3:.1f} k",
                    f"-{100 * p['reduction']:.1f}%",
                ],
                [
                    "inference model size",
                    mib(size["before_bytes"]),
                    mib(size["after_bytes"]),
                    f"{size['after_bytes'] / size['before_bytes']:.2f}x",
                ],
                *[
                    [
                        f"latency ms (batch {b}, {lat['threads']} threads)",
                        fmt(lat[f"before_batch{b}"]),
                        fmt(lat[f"after_batch{b}"]),
                        f"{lat[f'after_batch{b}'] / lat[f'before_batch{b}']:.2f}x",
                    ]
                    for b in (1, 8)
                ],
                [
                    "top-1",
                    pct(t["before"]),
                    pct(t["after_finetune"]),
                    f"{100 * (t['after_finetune'] - t['before']):+.1f} points (right after pruning: {pct(t['after_pruning'])})",
                ],
            ],
        ),
        "\n## Ratios per layer\n",
        markdown_table(["conv weight", "filters pruned"], [[k, f"{100 * v:.0f}%"] for k, v in r["ratios"].items()]),
        "\n## Excluded layers\n",
        markdown_table(["conv weight", "why"], [[k, v] for k, v in r["excluded"].items()]),
    ]
    return "\n".join(lines) + "\n"
