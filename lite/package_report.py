"""Markdown rendering of the Lite packaging report (the JSON twin holds every figure)."""

from __future__ import annotations

from vslim.tables import markdown_table, mib


def _verification(v: dict) -> str:
    if v["kind"] == "numeric":
        return (
            f"ran: max abs diff {v['max_abs_diff']:.2e} ({v['relative_diff']:.1e} of scale), "
            f"cosine {v['cosine_min']:.6f}, top-1 agreement {100 * v['top1_agreement']:.0f}% on {v['clips']} clips"
        )
    if v["kind"] == "structural":
        return "not run (ARM): structural — header, model viewer" + (", int8 kernels" if "int8" in v["reason"] else "")
    return "not verified"


def lite_markdown(r: dict) -> str:
    ts = r["temporal_shift"]
    lines = [
        "# Paddle Lite report\n",
        f"- Model: `{r['model']}` ({r['precision']}, {mib(r['inference_model_bytes'])} as an inference model)",
        f"- Optimizer: {r['optimizer']['version']} ({r['optimizer']['source']}: `{r['optimizer']['location']}`)",
        f"- temporal_shift: {ts['found']} op(s), shift_ratio {ts['shift_ratios'] or '-'}, "
        f"{ts['rewritten']} rewritten. {ts['note']}",
        "",
    ]
    rows = []
    for target, e in r["targets"].items():
        k = e["kernels"]
        rows.append(
            [
                target,
                e["file"],
                mib(e["bytes"]),
                f"{e['bytes'] / r['inference_model_bytes']:.2f}x",
                f"{k['int8_kernels']} / {k['total_kernels']}",
                _verification(e["verification"]),
            ]
        )
    lines.append(
        markdown_table(["target", "file", ".nb size", "vs inference model", "int8 kernels / all", "verification"], rows)
    )
    for target, e in r["targets"].items():
        lines.append(f"\n## {target}: kernels chosen\n")
        lines.append(
            markdown_table(
                ["kernel (target, precision)", "count"], [[k, n] for k, n in e["kernels"]["kernels"].items()]
            )
        )
        support = e["op_support"]
        lines.append(f"\n## {target}: op support ({', '.join(support['columns'])})\n")
        lines.append(
            markdown_table(
                ["op", "supported by"],
                [[op, ", ".join(cols) or "NOT SUPPORTED"] for op, cols in support["ops"].items()],
            )
        )
    return "\n".join(lines) + "\n"
