"""Benchmark reports: JSON (every figure), Markdown tables, PNG plots, and run-to-run comparison."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vslim.errors import DataError
from vslim.fsio import write_json, write_text_atomic
from vslim.serving.client_registry import describe
from vslim.tables import fmt, markdown_table

from .environment import environment_lines


def runtime_markdown(r: dict) -> str:
    lines = ["# Runtime benchmark (inference only)\n", *environment_lines(r["environment"]), ""]
    if r.get("vs_best_peer"):
        lines.append("## vslim vs the best peer (one interleaved run)\n")
        lines.append(
            markdown_table(
                [
                    "model",
                    "batch",
                    "threads",
                    "vslim's fastest",
                    "p50 ms",
                    "best peer (built by hand)",
                    "p50 ms",
                    "vslim / peer latency",
                ],
                [
                    [
                        v["model"],
                        v["batch"],
                        v["threads"],
                        v["vslim"],
                        v["vslim_p50_ms"],
                        v["best_peer"],
                        v["peer_p50_ms"],
                        f"{v['vslim_vs_peer_latency']:.2f}x",
                    ]
                    for v in r["vs_best_peer"]
                ],
            )
        )
        lines.append("\n## Every configuration\n")
    headers = [
        "model",
        "prec",
        "backend",
        "batch",
        "threads",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "mean ms",
        "std ms",
        "clips/s",
        "INT8/FP32 latency",
        "speed vs ORT FP32",
        "check vs Paddle",
    ]
    rows = []
    for x in r["rows"]:
        backend = f"{x['backend']} ({x['variant']})" if x["variant"] else x["backend"]
        if x["status"] != "ok":
            rows.append(
                [
                    x["model"],
                    x["precision"],
                    backend,
                    x["batch"],
                    x["threads"],
                    x["status"] + ": " + x["reason"][:90],
                    "",
                    "",
                    "",
                    "",
                    "",
                    "",
                    "",
                    "",
                ]
            )
            continue
        ratio = x.get("int8_vs_fp32_latency")
        peer = x.get("speedup_vs_onnxruntime_fp32")
        rows.append(
            [
                x["model"],
                x["precision"],
                backend,
                x["batch"],
                x["threads"],
                x["p50_ms"],
                x["p90_ms"],
                x["p99_ms"],
                x["mean_ms"],
                x["std_ms"],
                x["clips_per_s"],
                f"{ratio:.2f}x" if ratio else "-",
                f"{peer:.2f}x" if peer else "-",
                f"{x['max_rel_diff_vs_paddle_onednn']:.1e}, top-1 {100 * x['top1_agreement_vs_paddle_onednn']:.0f}%",
            ]
        )
    lines.append(markdown_table(headers, rows))
    if r.get("agreement"):
        lines.append("\n## INT8 vs FP32 predictions\n")
        lines.append(
            markdown_table(
                ["INT8 model", "FP32 model", "clips", "FP32 top-1", "INT8 top-1", "top-1 agreement"],
                [
                    [
                        k,
                        v["fp32"],
                        v["clips"],
                        f"{100 * v['fp32_top1']:.1f}%",
                        f"{100 * v['int8_top1']:.1f}%",
                        f"{100 * v['top1_agreement']:.1f}%",
                    ]
                    for k, v in r["agreement"].items()
                ],
            )
        )
    return "\n".join(lines) + "\n"


def e2e_markdown(r: dict) -> str:
    s, v = r["stages"], r["video"]
    lines = [
        "# End-to-end benchmark (one clip from a video file)\n",
        *environment_lines(r["environment"]),
        f"- Video: {v['path']} ({v['frames']} frames, {v['width']}x{v['height']}); model {r['model']['path']} "
        f"({r['model']['precision']}); decoder {r.get('decoder', 'opencv')}",
        "",
    ]
    names = {
        "decode_sample_ms": f"decode + sample ({r.get('decoder', 'opencv')}: sampled frames only)",
        "transform_ms": "transform",
        "preprocess_ms": "preprocessing total",
        "inference_ms": "inference",
        "total_ms": "end to end",
        "baseline_decode_all_ms": "baseline: decode every frame, then sample (PaddleVideo)",
        "baseline_opencv_sampled_ms": "baseline: OpenCV, sampled frames only (seek)",
    }
    names = {k: v for k, v in names.items() if k in s}
    lines.append(
        markdown_table(
            ["stage", "p50 ms", "p90 ms", "p99 ms", "mean ms"],
            [[names[k], s[k]["p50_ms"], s[k]["p90_ms"], s[k]["p99_ms"], s[k]["mean_ms"]] for k in names],
        )
    )
    lines.append(
        f"\nPreprocessing is {100 * r['preprocess_share_of_total']:.0f}% of the end-to-end p50; "
        f"sampled decoding is {r['decode_speedup_vs_decode_all']:.1f}x faster than decoding every frame"
        + (
            f" and {r['decode_speedup_vs_opencv_sampled']:.1f}x faster than OpenCV's sampled seek"
            if "decode_speedup_vs_opencv_sampled" in r
            else ""
        )
        + f"; largest pixel difference between the ways: {r.get('max_frame_diff_vs_decode_all', 0)}."
    )
    return "\n".join(lines) + "\n"


def describe_protocol(name: str) -> str:
    """A row's protocol in words; ``PROTOCOL video`` rows sent whole files to v2's ``NAME_video`` model."""
    if name.endswith(" video"):
        return f"{name} (the whole video file to the NAME_video model over {name.removesuffix(' video')}; the server decodes it)"
    return describe(name)


def serving_markdown(r: dict) -> str:
    lines = ["# Serving benchmark (loopback)\n", *environment_lines(r["environment"]), ""]
    if r.get("in_process"):
        ip = r["in_process"]
        lines.append(
            f"In-process predictor ({ip.get('runtime', 'paddle')}), batch 1: p50 {ip['p50_ms']:.2f} ms, "
            f"p99 {ip['p99_ms']:.2f} ms.\n"
        )
    if r.get("server_memory"):
        lines.append(
            "Server memory (peak RSS of each vslim-serve process after its load): "
            + "; ".join(
                f"{label} {m['peak_rss_mib']:.0f} MiB ({m['models']} model, {m['workers']} worker"
                f"{'s' if m['workers'] > 1 else ''})"
                for label, m in r["server_memory"].items()
            )
            + ".\n"
        )
    headers = [
        "server",
        "protocol",
        "concurrency",
        "infer/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "errors",
        "server ms",
        "queue ms",
        "inference ms",
        "decode ms",
        "mean batch",
        "client+transport ms",
    ]
    rows = [
        [
            x["server"],
            x["protocol"],
            x["concurrency"],
            x["infer_per_s"],
            x.get("p50_ms"),
            x.get("p90_ms"),
            x.get("p99_ms"),
            x["errors"],
            x.get("server_ms"),
            x.get("queue_ms"),
            x.get("inference_ms"),
            x.get("decode_ms"),
            x.get("mean_batch"),
            x.get("client_and_transport_ms"),
        ]
        for x in r["rows"]
    ]
    if any("reference_p50_ms" in x for x in r["rows"]):  # Ray's rows, each beside vslim-serve's in alternation
        headers += ["vslim-serve p50 ms (alternating)", "Ray's hop ms"]
        for row, x in zip(rows, r["rows"]):
            row += [x.get("reference_p50_ms"), x.get("hop_p50_ms")]
    lines.append(markdown_table(headers, rows))
    protocols = dict.fromkeys(x["protocol"] for x in r["rows"])
    lines.append("Protocols: " + "; ".join(describe_protocol(p) for p in protocols) + ".")
    if r.get("summary"):
        lines.append("\n## Summary\n")
        for key, value in sorted(r["summary"].items()):
            if isinstance(value, dict) and "served_p50_ms" in value:
                lines.append(
                    f"- {key}: served p50 {value['served_p50_ms']:.2f} ms vs in-process "
                    f"{value['in_process_p50_ms']:.2f} ms"
                    + (f" ({value['ratio']:.3f}x)" if "ratio" in value else "")
                    + f" (target <= {value['target_ms']:.2f} ms: "
                    f"{'met' if value['met'] else 'not met'})"
                )
            elif not isinstance(value, dict):
                lines.append(f"- {key}: {value:.2f}")
            elif all(isinstance(v, dict) and "hop_share" in v for v in value.values()):
                hops = ", ".join(
                    f"c={k}: {v['hop_p50_ms']:.1f} ms = {100 * v['hop_share']:.1f}% "
                    f"({'met' if v['met'] else 'not met'}, target <= {100 * v['target_share']:.0f}%)"
                    for k, v in sorted(value.items(), key=lambda kv: int(kv[0]))
                )
                lines.append(f"- {key}: {hops}")
            else:
                gains = ", ".join(f"c={k}: {v:.2f}x" for k, v in sorted(value.items(), key=lambda kv: int(kv[0])))
                lines.append(f"- {key}: {gains}")
    return "\n".join(lines) + "\n"


def _soak_markdown(r: dict) -> str:
    from .soak import soak_markdown

    return soak_markdown(r)


def _throughput_markdown(r: dict) -> str:
    from .throughput import throughput_markdown

    return throughput_markdown(r)


MARKDOWN = {
    "runtime": runtime_markdown,
    "e2e": e2e_markdown,
    "serving": serving_markdown,
    "throughput": _throughput_markdown,
    "soak": _soak_markdown,
}


def _style(fig, ax, xlabel: str, ylabel: str, title: str) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()


def _integer_ticks(ax, values) -> None:
    """Batch sizes and concurrency levels are whole numbers: tick exactly the ones measured on the x axis
    (a base-2 log axis when they span 8x or more, as 1, 2, 4, 8, 16 do)."""
    from matplotlib.ticker import FixedLocator, NullLocator

    values = sorted(set(int(v) for v in values))
    if not values:
        return
    if len(values) > 2 and values[-1] / values[0] >= 8:
        ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(values))
    ax.set_xticklabels([str(v) for v in values])
    ax.xaxis.set_minor_locator(NullLocator())


def figures(report: dict) -> list[tuple[str, Any]]:
    """The report's plots as (file name, matplotlib figure): latency vs batch per backend and precision
    (runtime); throughput vs latency and vs concurrency, per protocol and server (serving)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    made: list[tuple[str, Any]] = []  # (file name, matplotlib Figure)
    if report["kind"] == "runtime":
        rows = [r for r in report["rows"] if r["status"] == "ok"]
        fig, ax = plt.subplots(figsize=(7, 4.5))
        series: dict[str, list[tuple[Any, ...]]] = {}  # (batch, p50) here; (concurrency, infer/s, p50) below
        for r in rows:
            key = f"{r['model']} · {r['backend']}{' ' + r['variant'] if r['variant'] else ''} · {r['threads']}t"
            series.setdefault(key, []).append((r["batch"], r["p50_ms"]))
        for key, pts in sorted(series.items()):
            pts.sort()
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=key)
        ax.set_yscale("log")
        plain = FuncFormatter(lambda v, _: f"{v:g}")  # 16, not 1.6x10^1
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)
        _integer_ticks(ax, [r["batch"] for r in rows])
        _style(
            fig, ax, "batch size (clips per call)", "p50 latency (ms)", "Latency vs batch, FP32 and INT8 per backend"
        )
        made.append(("latency_vs_batch.png", fig))
    elif report["kind"] == "serving":
        series = {}
        for r in report["rows"]:
            if r.get("p50_ms") is not None:
                series.setdefault(f"{describe_protocol(r['protocol'])} · {r['server']}", []).append(
                    (int(r["concurrency"]), r["infer_per_s"], r["p50_ms"])
                )
        fig, ax = plt.subplots(figsize=(8, 5))
        for key, pts in sorted(series.items()):
            pts.sort()
            ax.plot([p[2] for p in pts], [p[1] for p in pts], marker="o", label=key)
            for c, thr, lat in pts:
                ax.annotate(str(c), (lat, thr), fontsize=6, xytext=(2, 2), textcoords="offset points")
        _style(
            fig,
            ax,
            "p50 latency (ms)",
            "throughput (infer/s)",
            "Throughput vs latency under load (point labels: concurrent clients)",
        )
        made.append(("throughput_vs_latency.png", fig))
        fig, ax = plt.subplots(figsize=(8, 5))
        for key, pts in sorted(series.items()):
            pts.sort()
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=key)
        _integer_ticks(ax, [p[0] for pts in series.values() for p in pts])
        _style(fig, ax, "concurrent clients", "throughput (infer/s)", "Throughput vs concurrency")
        made.append(("throughput_vs_concurrency.png", fig))
    return made


def plot(report: dict, out: Path) -> list[Path]:
    """Write :func:`figures` as PNG files into ``out``."""
    import matplotlib.pyplot as plt

    written = []
    try:
        for name, fig in figures(report):
            fig.savefig(out / name, dpi=110)
            written.append(out / name)
    finally:
        plt.close("all")
    return written


def write_report(report: dict, out: Path | str) -> list[Path]:
    """``<kind>.json``, ``<kind>.md`` and plots into ``out`` (created if needed)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    kind = report["kind"]
    paths = [write_json(out / f"{kind}.json", report), write_text_atomic(out / f"{kind}.md", MARKDOWN[kind](report))]
    return paths + plot(report, out)


def _key(kind: str, row: dict) -> tuple:
    if kind == "runtime":
        return row["model"], row["backend"], row["variant"], row["batch"], row["threads"]
    if kind == "serving":
        return row["server"], row["protocol"], row["concurrency"]
    return (row,)


KEY_FIELDS = {
    "runtime": "model · backend · variant · batch · threads",
    "serving": "server · protocol · concurrency",
    "e2e": "stage",
}


def _load_report(path: Path | str) -> dict:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"benchmark report {path} does not exist; give the <kind>.json a `vslim bench` run wrote")
    try:
        report = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{path} is not JSON ({exc}); give the <kind>.json a `vslim bench` run wrote") from None
    if not isinstance(report, dict) or report.get("kind") not in MARKDOWN or "environment" not in report:
        raise DataError(f"{path} is not a vslim benchmark report (runtime.json, e2e.json or serving.json)")
    if report["kind"] not in KEY_FIELDS:
        raise DataError(
            f"{path} is a {report['kind']} report, which `vslim bench compare` does not compare; "
            f"give {', '.join(KEY_FIELDS)} reports"
        )
    return report


def _row_name(kind: str, row: dict) -> str:
    return " · ".join(fmt(x) for x in _key(kind, row) if x != "")


def _keys_of(kind: str, report: dict, limit: int = 4) -> str:
    names = list(report["stages"]) if kind == "e2e" else [_row_name(kind, r) for r in report["rows"] if r.get("p50_ms")]
    if not names:
        return "no measured rows"
    shown = ", ".join(names[:limit]) + (f", ... ({len(names)} in all)" if len(names) > limit else "")
    return f"{len(names)} measured row(s): {shown}"


def _nothing_in_common(kind: str, a_path, a: dict, b_path, b: dict) -> DataError:
    return DataError(
        f"no {kind} rows in common between A = {a_path} and B = {b_path} (rows are matched on {KEY_FIELDS[kind]}), "
        f"so there is nothing to compare. A has {_keys_of(kind, a)}; B has {_keys_of(kind, b)}. "
        "Compare runs of the same configurations"
    )


def compare(a_path: Path | str, b_path: Path | str) -> str:
    """Markdown of B relative to A for every row both runs have (latency ratio < 1: B is faster).

    Two reports with no row in common are an error naming what each holds, not an empty table.
    """
    a, b = _load_report(a_path), _load_report(b_path)
    if a["kind"] != b["kind"]:
        raise DataError(
            f"cannot compare a {a['kind']} report ({a_path}) with a {b['kind']} report ({b_path}); "
            "give two reports of the same kind"
        )
    kind = a["kind"]
    a_name, b_name = Path(a_path).name, Path(b_path).name
    if a_name == b_name:
        a_name, b_name = str(a_path), str(b_path)
    lines = [
        f"# {kind} benchmark: B = {b_name} relative to A = {a_name}\n",
        f"- A: {a['environment']['cpu']['model']} @ {a['environment']['git_commit']}, {a['environment']['timestamp']}",
        f"- B: {b['environment']['cpu']['model']} @ {b['environment']['git_commit']}, {b['environment']['timestamp']}",
        "",
    ]
    if kind == "e2e":
        rows = [
            [
                stage,
                a["stages"][stage]["p50_ms"],
                b["stages"][stage]["p50_ms"],
                f"{b['stages'][stage]['p50_ms'] / a['stages'][stage]['p50_ms']:.2f}x",
            ]
            for stage in a["stages"]
            if stage in b["stages"]
        ]
        if not rows:
            raise _nothing_in_common(kind, a_path, a, b_path, b)
        lines.append(markdown_table(["stage", "A p50 ms", "B p50 ms", "B/A"], rows))
        return "\n".join(lines) + "\n"
    rate = "clips_per_s" if kind == "runtime" else "infer_per_s"
    a_rows = {_key(kind, r): r for r in a["rows"] if r.get("p50_ms")}
    rows = []
    for r in b["rows"]:
        k = _key(kind, r)
        if k in a_rows and r.get("p50_ms"):
            base = a_rows[k]
            rows.append(
                [
                    _row_name(kind, r),
                    base["p50_ms"],
                    r["p50_ms"],
                    f"{r['p50_ms'] / base['p50_ms']:.2f}x",
                    f"{r[rate] / base[rate]:.2f}x",
                ]
            )
    if not rows:
        raise _nothing_in_common(kind, a_path, a, b_path, b)
    lines.append(markdown_table(["row", "A p50 ms", "B p50 ms", "B/A latency", "B/A throughput"], rows))
    return "\n".join(lines) + "\n"
