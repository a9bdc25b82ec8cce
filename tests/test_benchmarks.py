"""Each benchmark subcommand on the small model with tiny counts: structure and consistency, never speed."""

import json

import numpy as np
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
    # (4 protocols + v2's video model over 2 of them) x 2 levels x (no batching, batching 4, stream relay, split ports)
    assert len(report["rows"]) == 6 * 2 * 4
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
    assert {"grpc_p50_vs_in_process_stream_relay", "v2-http_p50_vs_in_process_stream_relay"} <= set(report["summary"])
    servers = {"no batching", "batching 4", "no batching, stream relay", "no batching, split ports"}
    assert {x["server"] for x in report["rows"]} == servers
    for label, memory in report["server_memory"].items():  # each server's own peak, read from /proc
        assert memory["peak_rss_mib"] >= memory["rss_after_mib"] > 50 and memory["workers"] == 1, label
    assert set(report["server_memory"]) == servers
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


def test_rays_hop_is_summed_up_against_the_alternating_vslim_serve():
    from vslim.benchmarks.bench_report import serving_markdown
    from vslim.benchmarks.serving_load import _summarize

    def row(server, level, p50, reference=None, rate=10.0):
        x = {"server": server, "protocol": "v2-grpc", "concurrency": level, "infer_per_s": rate, "errors": 0}
        x["p50_ms"] = p50
        if reference is not None:
            x.update(reference_p50_ms=reference, hop_p50_ms=p50 - reference, reference_infer_per_s=rate)
        return x

    rows = [
        row("no batching", 1, 100.0),
        row("ray 1 replica, proxy ingress", 1, 115.0, 100.0),
        row("ray 1 replica, direct ingress", 1, 103.0, 100.0),
        row("ray 1 replica, direct ingress", 8, 1000.0, 1010.0, rate=6.0),
        row("ray 2 replicas, direct ingress", 8, 600.0, 1010.0, rate=11.4),
    ]
    from vslim.benchmarks.environment import environment

    report = {"kind": "serving", "environment": environment(), "config": {}, "rows": rows}
    _summarize(report)
    summary = report["summary"]
    proxy, direct = summary["v2-grpc_ray_proxy_hop"]["1"], summary["v2-grpc_ray_direct_hop"]
    assert proxy["hop_p50_ms"] == 15.0 and abs(proxy["hop_share"] - 0.15) < 1e-9 and not proxy["met"]
    assert direct["1"]["met"] and direct["8"]["hop_p50_ms"] == -10.0 and direct["8"]["met"]
    assert abs(summary["v2-grpc_ray_direct_2_vs_1_replicas_throughput"]["8"] - 1.9) < 1e-9
    md = serving_markdown(report)
    assert "Ray's hop ms" in md and "c=1: 15.0 ms = 15.0% (not met, target <= 10%)" in md, md


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
    r = cli(
        "bench",
        "serving",
        "--address",
        "127.0.0.1:9393",
        "--client-conf",
        tmp_path,
        "--ray-ingress",
        "haproxy",
        "--out",
        tmp_path,
    )
    assert r.code == 2 and "give proxy, direct or both" in r.err, r.err


def test_throughput_serves_and_loads_peers_one_process_each(cli, bundle_fp32, fp32_small, tmp_path):
    """vslim-serve (batching off and on) and the ONNX Runtime and OpenVINO peers, each loaded in its own process:
    every level answered, the peers' own layouts reported, a summary row per class and level."""
    out = tmp_path / "tp"
    r = cli(
        "bench",
        "throughput",
        "--bundle",
        bundle_fp32.server,
        "--model",
        fp32_small,
        "--peers",
        "openvino,onnxruntime",
        "--concurrency",
        "1,3",
        "--duration",
        "0.5",
        "--rounds",
        "2",
        "--max-batch-size",
        "2",
        "--out",
        out,
    )
    assert r.code == 0, r.err
    report = json.loads((out / "throughput.json").read_text())
    rows = {row["contender"]: row for row in report["rows"]}
    assert len(rows) == 4 and {row["kind"] for row in rows.values()} == {"vslim-serve", "peer"}
    for row in rows.values():
        assert [level["concurrency"] for level in row["levels"]] == [1, 3]
        for level in row["levels"]:
            assert level["calls"] > 0 and len(level["per_round_clips_per_s"]) == 2
            assert 0 < level["p50_ms"] <= level["p99_ms"] and level["clips_per_s"] > 0
        assert row["peak_rss_mib"] > 0
    openvino = rows["peer openvino"]["layout"]
    assert openvino["streams"] >= 1 and openvino["optimal_requests"] >= 1
    served = [row for row in rows.values() if row["kind"] == "vslim-serve"]
    assert any("no batching" in row["contender"] for row in served)
    assert all("worker(s) x" in row["layout"] for row in served), [row["layout"] for row in served]
    summary = {(s["class"], s["concurrency"]): s for s in report["summary"]}
    assert set(summary) == {("float", 1), ("float", 3), ("any", 1), ("any", 3)}
    for s in summary.values():
        assert s["ratio"] == pytest.approx(s["vslim_clips_per_s"] / s["peer_clips_per_s"])
    assert "vslim-serve's best vs the best peer" in (out / "throughput.md").read_text()


def test_throughput_bad_input(cli, bundle_fp32, int8_small_avg, fp32_small, tmp_path):
    r = cli("bench", "throughput", "--out", tmp_path, "--peers", "")
    assert r.code == 2 and "give --bundle" in r.err
    r = cli("bench", "throughput", "--bundle", tmp_path / "nothing", "--out", tmp_path)
    assert r.code == 2 and "is not a folder" in r.err
    r = cli("bench", "throughput", "--bundle", bundle_fp32.server, "--out", tmp_path)
    assert r.code == 2 and "give --model" in r.err
    r = cli("bench", "throughput", "--model", fp32_small, "--peers", "tensorrt", "--out", tmp_path)
    assert r.code == 2 and "unknown peer 'tensorrt'" in r.err
    r = cli("bench", "throughput", "--model", fp32_small, "--peers", "openvino-nncf-int8", "--out", tmp_path)
    assert r.code == 2 and "--calib-list" in r.err
    r = cli(
        "bench", "throughput", "--model", fp32_small, "--peers", "openvino", "--protocol", "v2-video", "--out", tmp_path
    )
    assert r.code == 2 and "--protocol" in r.err
    from vslim.benchmarks.peer_load import run_peer
    from vslim.errors import ConfigError

    with pytest.raises(ConfigError, match="already quantized"):
        run_peer("onnxruntime", str(int8_small_avg.output_dir), [1], 0.1)


def test_throughput_video_in_label_out_against_the_handbuilt_pipeline(
    cli, bundle_fp32, fp32_small, synth_data, tmp_path
):
    """--video: vslim-serve gets the whole file, the hand-built contender preprocesses it PaddleVideo's way (every
    frame decoded, Pillow transforms) before its peer runs; both answers are recorded and compared."""
    from vslim.benchmarks.handbuilt import paddlevideo_clip
    from vslim.data.pipeline import ClipPipeline
    from vslim.inference import inspect_model

    video = next((synth_data / "videos").rglob("*.mp4"))
    pipeline = ClipPipeline.for_model(inspect_model(fp32_small).meta)
    by_hand, ours = paddlevideo_clip(video, pipeline), pipeline.from_video(video)
    # the same clip but for resampling: Pillow's bilinear filters when it shrinks, OpenCV's does not
    assert by_hand.shape == (1, *ours.shape) and float(np.abs(by_hand[0] - ours).mean()) < 0.05
    out = tmp_path / "tpv"
    r = cli(
        "bench",
        "throughput",
        "--bundle",
        bundle_fp32.server,
        "--model",
        fp32_small,
        "--peers",
        "onnxruntime",
        "--video",
        video,
        "--concurrency",
        "2",
        "--duration",
        "0.5",
        "--rounds",
        "1",
        "--max-batch-size",
        "1",
        "--out",
        out,
    )
    assert r.code == 0, r.err
    report = json.loads((out / "throughput.json").read_text())
    rows = {row["kind"]: row for row in report["rows"]}
    assert set(rows) == {"vslim-serve", "peer"} and "video" in rows["vslim-serve"]["contender"]
    assert rows["peer"]["contender"] == "hand-built: PaddleVideo preprocessing + onnxruntime"
    for row in rows.values():
        assert row["levels"][0]["calls"] > 0 and row["answer"]["top1"] >= 0
    summary = report["summary"][0]
    assert summary["same_top1"] == (rows["vslim-serve"]["answer"]["top1"] == rows["peer"]["answer"]["top1"])
    r = cli(
        "bench",
        "throughput",
        "--model",
        fp32_small,
        "--peers",
        "onnxruntime",
        "--video",
        tmp_path / "no.mp4",
        "--out",
        out,
    )
    assert r.code == 2 and "does not exist" in r.err
