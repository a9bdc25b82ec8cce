"""Each benchmark subcommand on the small model with tiny counts: structure and consistency, never speed."""

import json

import pytest

pytestmark = pytest.mark.slow


def _consistent(stats: dict, batch: int = 1) -> None:
    assert stats["calls"] > 0
    assert 0 < stats["min_ms"] <= stats["p50_ms"] <= stats["p90_ms"] <= stats["p95_ms"] <= stats["p99_ms"]
    assert stats["std_ms"] >= 0
    assert stats["clips_per_s"] == pytest.approx(1000 * batch / stats["mean_ms"], rel=1e-6)


def test_runtime_matrix(cli, fp32_small, int8_small_avg, synth_data, tmp_path):
    out = tmp_path / "rt"
    r = cli(
        "bench",
        "runtime",
        "--model",
        f"fp32={fp32_small}",
        "--model",
        f"int8={int8_small_avg.output_dir}",
        "--batch-sizes",
        "1,2",
        "--threads",
        "1",
        "--warmup",
        "1",
        "--iterations",
        "3",
        "--agreement-list",
        synth_data / "val.list",
        "--out",
        out,
    )
    assert r.code == 0, r.err
    report = json.loads((out / "runtime.json").read_text())
    assert {"cpu", "packages", "git_commit", "gpu"} <= set(report["environment"])
    assert "avx2" in report["environment"]["cpu"]["flags"]
    peak = report["environment"]["peak_rss_mib"]  # the bench loaded two models: well above an idle interpreter
    assert peak["self"] > 100 and "Peak memory (RSS)" in (out / "runtime.md").read_text()
    assert report["pairs"] == {"int8": "fp32"}
    rows = {(x["model"], x["backend"], x["variant"], x["batch"]): x for x in report["rows"]}
    # FP32: paddle-cpu, -onednn, -bf16, onnxruntime (FP32, its own INT8), openvino (fp32, bf16, default hint,
    # NNCF INT8), paddle-gpu, two TRT variants = 12; INT8: paddle-cpu, -onednn, -bf16, onnxruntime, openvino
    # (QDQ), paddle-gpu, one TRT variant = 7; x 2 batch sizes
    assert len(rows) == 2 * (12 + 7)
    assert report["interleaved"] is True
    for key, x in rows.items():
        assert x["status"] in ("ok", "skipped"), x
        if x["status"] == "skipped":
            assert x["reason"], x
            continue
        _consistent(x, x["batch"])
        # FP32 backends agree to float rounding, BF16 to its 8-bit mantissa; INT8 kernels differ in rounding
        # between runtimes (0.05-0.2 of the logit scale on small models): there they must pick the same classes
        variant = key[2]
        limit = (
            0.5
            if key[0] == "int8" or "int8" in variant
            else 0.05
            if variant in ("bf16", "default-hint") or key[1] == "paddle-bf16"
            else 1e-3
        )
        assert x["max_rel_diff_vs_paddle_onednn"] < limit and x["top1_agreement_vs_paddle_onednn"] >= 0.5, x
    for name in ("openvino (nncf-int8)", "onnxruntime (quantize-static-int8)", "openvino (default-hint)"):
        backend, variant = name.rstrip(")").split(" (")
        assert rows[("fp32", backend, variant, 1)]["status"] == "ok", name  # the peers a user would build
    versus = report["vs_best_peer"]
    assert [(v["model"], v["batch"]) for v in versus] == [("fp32", 1), ("fp32", 2)]
    assert all(v["vslim_vs_peer_latency"] > 0 and v["best_peer"].startswith("fp32 ") for v in versus)
    assert "vslim vs the best peer" in (out / "runtime.md").read_text()
    assert rows[("fp32", "paddle-onednn", "", 1)]["status"] == "ok"
    assert rows[("int8", "paddle-cpu", "", 1)]["status"] == "skipped"
    assert rows[("int8", "paddle-onednn", "", 2)]["int8_vs_fp32_latency"] > 0
    assert rows[("int8", "paddle-onednn", "", 1)]["speedup_vs_onnxruntime_fp32"] > 0
    if rows[("fp32", "paddle-gpu", "", 1)]["status"] == "skipped":
        assert "CUDA" in rows[("fp32", "paddle-gpu", "", 1)]["reason"]
    agreement = report["agreement"]["int8"]
    assert agreement["clips"] == 100 and agreement["top1_agreement"] >= 0.95
    assert (out / "latency_vs_batch.png").stat().st_size > 1000
    assert "speed vs ORT FP32" in (out / "runtime.md").read_text()


def test_e2e(cli, fp32_small, tmp_path):
    out = tmp_path / "e2e"
    r = cli("bench", "e2e", "--model", fp32_small, "--iterations", "3", "--out", out)
    assert r.code == 0, r.err
    report = json.loads((out / "e2e.json").read_text())
    assert report["video"]["frames"] == 300 and (report["video"]["width"], report["video"]["height"]) == (320, 240)
    for stats in report["stages"].values():
        _consistent(stats)
    s = report["stages"]
    assert s["total_ms"]["mean_ms"] == pytest.approx(
        s["decode_sample_ms"]["mean_ms"] + s["transform_ms"]["mean_ms"] + s["inference_ms"]["mean_ms"], rel=1e-6
    )
    assert 0 < report["preprocess_share_of_total"] < 1
    # PyAV by default, timed against OpenCV's seek and a full decode, all three seeing the same frames
    assert report["decoder"] == "pyav" and report["max_frame_diff_vs_decode_all"] == 0
    assert {"baseline_decode_all_ms", "baseline_opencv_sampled_ms"} <= set(s)
    assert "OpenCV, sampled frames only" in (out / "e2e.md").read_text()


def test_serving_sweep_and_compare(cli, bundle_int8, synth_data, tmp_path):
    out = tmp_path / "srv"
    video = next((synth_data / "videos").rglob("*.mp4"))
    r = cli(
        "bench",
        "serving",
        "--bundle",
        bundle_int8.server,
        "--protocols",
        "grpc,http,v2-grpc,v2-http",
        "--concurrency",
        "1,4",
        "--requests",
        "12",
        "--duration",
        "20",
        "--batching",
        "1,4",
        "--split-ports",
        "--video",
        video,
        "--out",
        out,
    )
    assert r.code == 0, r.err
    report = json.loads((out / "serving.json").read_text())
    # (4 protocols + v2's video model over 2 of them) x 2 levels x (no batching, batching 4, split ports)
    assert len(report["rows"]) == 6 * 2 * 3
    videos = [x for x in report["rows"] if x["protocol"].endswith(" video")]
    assert {x["protocol"] for x in videos} == {"v2-grpc video", "v2-http video"}
    for x in videos:  # the server decoded every file: its video model's statistics count the decode
        assert x["decode_ms"] > 0 and x["server_ms"] > x["decode_ms"], x
    ratios = report["summary"]["v2-http_video_vs_tensor_throughput (no batching)"]
    assert set(ratios) == {"1", "4"} and all(r > 0 for r in ratios.values())
    for x in report["rows"]:
        assert x["errors"] == 0 and x["completed"] == 12
        _consistent(x)
        assert x["infer_per_s"] > 0 and x["server_ms"] > 0 and x["inference_ms"] > 0
        assert x["server_ms"] <= x["mean_ms"] * 1.05
    assert any(x["mean_batch"] > 1 for x in report["rows"] if x["server"] == "batching 4" and x["concurrency"] == 4)
    assert {"grpc_p50_vs_in_process", "v2-http_p50_vs_in_process"} <= set(report["summary"])
    assert {"grpc_p50_vs_in_process_split_ports", "v2-grpc_p50_vs_in_process_split_ports"} <= set(report["summary"])
    assert {x["server"] for x in report["rows"]} == {"no batching", "batching 4", "no batching, split ports"}
    for label, memory in report["server_memory"].items():  # each server's own peak, read from /proc
        assert memory["peak_rss_mib"] >= memory["rss_after_mib"] > 50 and memory["workers"] == 1, label
    assert set(report["server_memory"]) == {"no batching", "batching 4", "no batching, split ports"}
    assert report["in_process"]["p50_ms"] > 0
    assert (out / "throughput_vs_latency.png").stat().st_size > 1000
    assert (out / "throughput_vs_concurrency.png").stat().st_size > 1000
    md = (out / "serving.md").read_text()
    assert "http (Paddle Serving HTTP, JSON body)" in md and "v2-grpc (KServe v2 gRPC" in md
    figures = dict(figures_of(report))
    legend = [t.get_text() for t in figures["throughput_vs_latency.png"].axes[0].get_legend().get_texts()]
    assert "http (Paddle Serving HTTP, JSON body) · no batching" in legend, legend
    by_concurrency = figures["throughput_vs_concurrency.png"].axes[0]
    assert list(by_concurrency.get_xticks()) == [1, 4]
    assert [t.get_text() for t in by_concurrency.get_xticklabels()] == ["1", "4"]
    r = cli("bench", "compare", out / "serving.json", out / "serving.json")
    assert r.code == 0 and "1.00x" in r.out


def figures_of(report):
    from vslim.benchmarks.bench_report import figures

    return figures(report)


def test_compare_refuses_reports_with_nothing_in_common(cli, fp32_small, tmp_path):
    """Two runs of different configurations used to give an empty table and exit 0."""
    common = ["--model", f"fp32={fp32_small}", "--warmup", "1", "--iterations", "2", "--threads", "1"]
    r = cli("bench", "runtime", *common, "--backends", "paddle-onednn", "--batch-sizes", "1,3", "--out", tmp_path / "a")
    assert r.code == 0, r.err
    r = cli("bench", "runtime", *common, "--backends", "paddle-cpu", "--batch-sizes", "2", "--out", tmp_path / "b")
    assert r.code == 0, r.err
    a, b = tmp_path / "a" / "runtime.json", tmp_path / "b" / "runtime.json"
    r = cli("bench", "compare", a, b)
    assert r.code == 2 and not r.out, r.out
    assert f"no runtime rows in common between A = {a} and B = {b}" in r.err
    assert "A has 2 measured row(s): fp32 · paddle-onednn · 1 · 1, fp32 · paddle-onednn · 3 · 1" in r.err
    assert "B has 1 measured row(s): fp32 · paddle-cpu · 2 · 1" in r.err
    r = cli("bench", "compare", a, a)
    assert r.code == 0 and r.out.count("1.00x") == 4
    r = cli("bench", "compare", a, tmp_path / "missing.json")
    assert r.code == 2 and "does not exist" in r.err
    r = cli("bench", "compare", a, tmp_path / "a" / "runtime.md")
    assert r.code == 2 and "is not JSON" in r.err
    # batch sizes are ticked as the whole numbers measured
    import json

    ((name, fig),) = figures_of(json.loads(a.read_text()))
    assert name == "latency_vs_batch.png" and list(fig.axes[0].get_xticks()) == [1, 3]


def test_bench_bad_input(cli, fp32_small, tmp_path):
    r = cli("bench", "runtime", "--model", f"x={fp32_small}", "--backends", "tensorflow", "--out", tmp_path)
    assert r.code == 2 and "unknown backend 'tensorflow'" in r.err
    r = cli("bench", "runtime", "--model", str(fp32_small), "--out", tmp_path)
    assert r.code == 2 and "LABEL=MODEL_DIR" in r.err
    r = cli("bench", "serving", "--address", "10.0.0.1:9393", "--client-conf", tmp_path, "--out", tmp_path)
    assert r.code == 2 and "only target this machine" in r.err
    r = cli("bench", "serving", "--address", "127.0.0.1:9393", "--protocols", "grpc,triton", "--out", tmp_path)
    assert r.code == 2 and "unknown triton" in r.err and "v2-http" in r.err
    r = cli("bench", "runtime", "--model", f"x={fp32_small}", "--batch-sizes", "0", "--out", tmp_path)
    assert r.code == 2 and "whole numbers >= 1" in r.err
