"""Markdown renderings of compression reports (the JSON twin holds every figure)."""
from __future__ import annotations

from vslim.report import fmt, markdown_table, mib, pct


def ptq_markdown(r: dict) -> str:
    fp32_val = (r["fp32"] or {}).get("val") or {}
    lines = [
        "# Post-training quantization report\n",
        f"- FP32 model: `{r['fp32_model']}`",
        f"- INT8 model: `{r['int8_model']}` (algorithm **{r['algo']}**, mode {r['mode']})",
        f"- Calibration clips: {r['calibration_clips']}; validation clips: {r['validation_clips']}",
        f"- oneDNN INT8 ops: {', '.join(r['int8']['onednn_int8_ops']) or '-'}",
        "",
    ]
    int8 = r["int8"]
    val = int8.get("val") or {}
    lat = r["latency_ms"] or {}
    calib = int8.get("calib") or {}
    fp32 = r["fp32"]
    rows = [
        ["FP32", pct(fp32_val.get("top1")), pct(fp32_val.get("top5")), "-", "-",
         mib(fp32["params_bytes"]), mib(fp32["total_bytes"]), fmt(lat.get("fp32")), "-"],
        [f"INT8 ({r['algo']})", pct(val.get("top1")), pct(val.get("top5")), pct(val.get("agreement")),
         fmt(calib.get("cosine_mean"), 4), mib(int8["params_bytes"]), mib(int8["total_bytes"]),
         fmt(lat.get("int8")), f"{int8['seconds']:.1f}"],
    ]
    threads = f", {lat['threads']} threads" if lat else ""
    lines.append(markdown_table(
        ["model", "top-1", "top-5", "top-1 agreement", "calib cosine", "weights", "weights + program",
         f"latency ms (batch 1{threads})", "PTQ time s"], rows))
    lines.append(
        f"\nWeights {fp32['params_bytes'] / int8['params_bytes']:.2f}x smaller; weights + program "
        f"{fp32['total_bytes'] / int8['total_bytes']:.2f}x smaller (the program grows by its quantize/dequantize ops)."
    )
    if len(r["candidates"]) > 1:
        lines.append("\n## Candidates\n")
        crows = []
        for c in r["candidates"]:
            v = c.get("val") or {}
            crows.append([c["algo"], pct(v.get("top1")), pct(v.get("agreement")), f"{c['calib']['cosine_mean']:.4f}",
                          f"{c['seconds']:.1f}", c["within_tolerance"], "yes" if c["algo"] == r["algo"] else ""])
        lines.append(markdown_table(["algo", "top-1", "agreement", "calib cosine", "time s", "within tolerance",
                                     "chosen"], crows))
    return "\n".join(lines) + "\n"
