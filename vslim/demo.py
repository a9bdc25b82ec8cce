"""``vslim demo``: the whole path on built-in data, from nothing to an INT8 model and a comparison.

Steps (each reuses its output from an earlier run unless ``fresh``):
synthetic data -> train the small PP-TSM -> export -> PTQ (auto) -> classify the
demo video with FP32 and INT8 -> package the INT8 model as a Paddle Serving bundle,
serve it on a free local port and classify the demo video through every protocol
-> ARM ``.nb`` files of the FP32 and INT8 models for Paddle Lite (the Lite toolchain is
built on first use) -> FP32-vs-INT8 table.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from vslim.compress.config import PTQConfig

from .config import ListConfig, PredictorConfig, TrainConfig


@dataclass
class DemoResult:
    workdir: Path
    fp32_dir: Path
    int8_dir: Path
    ptq_report: dict
    predictions: dict = field(default_factory=dict)
    served: dict = field(default_factory=dict)
    lite_reports: dict = field(default_factory=dict)
    chain: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)


def _step(name: str, path: Path, fresh: bool, say: Callable[[str], None]) -> bool:
    """True when the step must run; False when an earlier run's output is reused."""
    if path.exists() and not fresh:
        say(f"  reusing {path} (pass --fresh to redo it)")
        return False
    if path.exists():
        shutil.rmtree(path)
    return True


def run_demo(
    workdir: Path | str = "vslim-demo",
    epochs: int = 12,
    seed: int = 0,
    fresh: bool = False,
    say: Callable[[str], None] = print,
    full: bool = False,
) -> DemoResult:
    from .compress.ptq import quantize
    from .data.synth import SynthConfig, generate
    from .export import export_model
    from .inference import PaddlePredictor
    from .predict import classify
    from .train import train

    work = Path(workdir)
    data, run, fp32, int8 = work / "data", work / "train", work / "fp32", work / "int8"
    timings = {}
    t = time.perf_counter()
    say(f"[1/7] synthetic data set -> {data}")
    if _step("data", data, fresh, say):
        generate(data, SynthConfig(seed=seed))
    timings["data_s"] = time.perf_counter() - t

    t = time.perf_counter()
    say(f"[2/7] train the small PP-TSM ({epochs} epochs) -> {run}")
    if _step("train", run, fresh, say):
        train(
            TrainConfig(
                arch="pptsm_small",
                train=ListConfig(str(data / "train.list")),
                val=ListConfig(str(data / "val.list")),
                output_dir=str(run),
                epochs=epochs,
                seed=seed,
            ),
            on_epoch=lambda r: say(f"  epoch {r['epoch']}: loss {r['loss']:.3f}, val top-1 {100 * r['val_top1']:.1f}%"),
        )
    timings["train_s"] = time.perf_counter() - t

    t = time.perf_counter()
    say(f"[3/7] export the FP32 inference model -> {fp32}")
    if _step("export", fp32, fresh, say):
        export_model(run / "model.pdparams", fp32)
    timings["export_s"] = time.perf_counter() - t

    t = time.perf_counter()
    say(f"[4/7] post-training INT8 quantization (auto: avg, abs_max, hist, mse) -> {int8}")
    if _step("ptq", int8, fresh, say):
        quantize(
            PTQConfig(
                model_dir=str(fp32),
                output_dir=str(int8),
                calib=ListConfig(str(data / "calib.list")),
                val=ListConfig(str(data / "val.list")),
                algo="auto",
            )
        )
    timings["ptq_s"] = time.perf_counter() - t

    say(f"[5/7] classify {data / 'demo.mp4'} with FP32 and INT8")
    preds = {}
    for name, folder in (("fp32", fp32), ("int8", int8)):
        predictor = PaddlePredictor(folder, PredictorConfig())
        preds[name] = classify(predictor, [data / "demo.mp4"], top_k=3)[0]
    bundle = work / "serving"
    say(f"[6/7] package the INT8 model for Paddle Serving -> {bundle}, serve it, classify through each protocol")
    if _step("package", bundle, fresh, say):
        from .serving.bundle import package_serving
        from .serving.config import ServingPackageConfig

        package_serving(ServingPackageConfig(str(int8), str(bundle), name="pptsm_small_int8"))
    t = time.perf_counter()
    served = serve_and_classify(
        bundle / "pptsm_small_int8_serving_server", bundle / "pptsm_small_int8_serving_client", data / "demo.mp4", say
    )
    timings["serve_s"] = time.perf_counter() - t

    t = time.perf_counter()
    lite = work / "lite"
    say(f"[7/7] Paddle Lite .nb files for ARM (FP32 and INT8) -> {lite}")
    lite_reports = build_lite(fp32, int8, lite, fresh, say)
    timings["lite_s"] = time.perf_counter() - t
    import json

    report = json.loads((int8 / "ptq_report.json").read_text())
    result = DemoResult(work, fp32, int8, report, preds, served, lite_reports, timings=timings)
    if full:
        t = time.perf_counter()
        result.chain = run_chain(work, data, run, int8, fresh, say)
        timings["chain_s"] = time.perf_counter() - t
    return result


def run_chain(work: Path, data: Path, trained: Path, ptq: Path, fresh: bool, say: Callable[[str], None]) -> dict:
    """prune (30% fewer FLOPs) -> fine-tune -> QAT -> serving bundle -> serve and classify."""
    import json

    from vslim.compress.config import PruneConfig, QATConfig

    from .compress.prune import prune_model
    from .compress.qat import qat
    from .serving.bundle import package_serving
    from .serving.config import ServingPackageConfig

    chain = work / "chain"
    pruned, qat_dir, bundle = chain / "pruned", chain / "qat", chain / "serving"
    lists = dict(train=ListConfig(str(data / "train.list")), val=ListConfig(str(data / "val.list")))
    say(f"[chain 1/3] prune the small PP-TSM to 30% fewer FLOPs, fine-tune -> {pruned}")
    if _step("prune", pruned, fresh, say):
        prune_model(
            PruneConfig(weights=str(trained / "model.pdparams"), output_dir=str(pruned), flops_target=0.3, **lists),
            say=lambda m: say(f"  {m}"),
        )
    say(f"[chain 2/3] quantization-aware training of the pruned model -> {qat_dir}")
    if _step("qat", qat_dir, fresh, say):
        qat(
            QATConfig(
                weights=str(pruned / "weights" / "model.pdparams"), output_dir=str(qat_dir), ptq_model=str(ptq), **lists
            ),
            say=lambda m: say(f"  {m}"),
        )
    say(f"[chain 3/3] package the pruned INT8 model for serving -> {bundle}, serve it, classify")
    if _step("package", bundle, fresh, say):
        package_serving(ServingPackageConfig(str(qat_dir), str(bundle), name="pptsm_small_pruned_int8"))
    served = serve_and_classify(
        bundle / "pptsm_small_pruned_int8_serving_server",
        bundle / "pptsm_small_pruned_int8_serving_client",
        data / "demo.mp4",
        say,
    )
    return {
        "prune": json.loads((pruned / "prune_report.json").read_text()),
        "qat": json.loads((qat_dir / "qat_report.json").read_text()),
        "served": served,
    }


def build_lite(fp32: Path, int8: Path, out: Path, fresh: bool, say: Callable[[str], None]) -> dict:
    """ARM .nb files of both models (the toolchain is set up first if this machine has none)."""
    import json

    from vslim.lite.config import LiteConfig
    from vslim.lite.errors import LiteError

    from .lite.package import REPORT_JSON, package_lite
    from .lite.toolchain import find_toolchain, setup_toolchain

    reports = {}
    for name, model in (("fp32", fp32), ("int8", int8)):
        folder = out / name
        if _step(f"lite {name}", folder, fresh, say):
            try:
                find_toolchain()
            except LiteError:
                say("  no Lite optimizer yet: building the toolchain once (vslim lite setup)")
                setup_toolchain(say=lambda m: say(f"  {m}"))
            package_lite(
                LiteConfig(model_dir=str(model), output_dir=str(folder), targets=["arm"], name=f"pptsm_small_{name}"),
                say=lambda m: say(f"  {m}"),
            )
        reports[name] = json.loads((folder / REPORT_JSON).read_text())
    return reports


def serve_and_classify(server_dir: Path, client_dir: Path, video: Path, say: Callable[[str], None]) -> dict:
    """Start a server on a free local port in this process, classify ``video`` by every protocol, stop."""
    import asyncio
    import threading

    from vslim.serving.config import ServerConfig

    from .data.decode import open_video
    from .serving.client import ClientConfig, VideoEndpointClient, classify_video, make_client, protocol_names
    from .serving.server import run_server

    started, holder = threading.Event(), {}

    def on_ready(running):
        holder["server"] = running
        started.set()

    def run():
        try:
            holder["code"] = asyncio.run(
                run_server(ServerConfig(bundle=str(server_dir), port=0), on_ready, install_signals=False)
            )
        except BaseException as exc:  # surface start-up errors in the main thread
            holder["error"] = exc
            started.set()

    thread = threading.Thread(target=run, name="vslim-demo-server", daemon=True)
    thread.start()
    started.wait()
    if "error" in holder:
        raise holder["error"]
    running = holder["server"]
    address = f"127.0.0.1:{running.port}"
    results = {}
    try:
        conf = ClientConfig.load(client_dir)
        for protocol in protocol_names(tensors_only=True, same_host=False):
            with make_client(protocol, address, conf) as client:
                top = classify_video(client, video, top_k=1)
            results[protocol] = (top.labels[0], top.scores[0])
        with make_client("v2-http", address, conf) as client:  # the server decodes the file ({name}_video)
            (top,) = client.classify_files([video], top_k=1)
        results["v2 video model"] = (top.labels[0], top.scores[0])
        endpoint = VideoEndpointClient(address)
        with open_video(video) as reader:
            answer = endpoint.predict_frames(reader.read(range(reader.num_frames)))
        results["video endpoint"] = (eval_list(answer["value"][0])[0], float(eval_list(answer["value"][1])[0]))
        top = endpoint.classify_file(video, top_k=1)
        results["video file upload"] = (top.labels[0], top.scores[0])
        for protocol, (label, score) in results.items():
            say(f"  {protocol:<18} {label} ({score:.4f}) via {address}")
    finally:
        running.stop()
        thread.join(60)
    return results


def eval_list(text: str) -> list:
    """PaddleVideo's pipeline answers carry Python list literals as strings."""
    import ast

    return ast.literal_eval(text)
