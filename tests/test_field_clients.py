"""The field's own tools against real vslim servers, unmodified: Triton's perf_analyzer (v2 HTTP and gRPC, with
and without dynamic batching) and KServe's Python SDK (REST with JSON and binary tensors, gRPC).

They live in their own environment (``make clients-env``: their protobuf pins clash with the stack's) and run
as separate processes. Without it these tests skip, except in CI, which builds it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from servers import ServerProcess

# third-party tools against the server: Python 3.11's `make test` runs them; the 3.12 tier's server tests cover
# the server's own code paths
pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
CLIENTS = ROOT / ".venv-clients"


@pytest.fixture(scope="module")
def clients() -> Path:
    if not (CLIENTS / ".installed").is_file():
        if os.environ.get("CI"):
            pytest.fail("CI builds the clients' environment (make clients-env) before the tests; it is missing")
        pytest.skip("the field's clients are not installed here: make clients-env")
    return CLIENTS


def _perf_analyzer(clients: Path, address: str, protocol: str, model: str) -> subprocess.CompletedProcess:
    cudart = next(clients.glob("lib/python3*/site-packages/nvidia/cuda_runtime/lib"))
    env = {**os.environ, "LD_LIBRARY_PATH": str(cudart)}
    cmd = [
        str(clients / "bin" / "perf_analyzer"),
        "-m",
        model,
        "-u",
        address,
        "-i",
        protocol,
        "--concurrency-range",
        "1:4",
        "--measurement-interval",
        "500",
        "--max-trials",
        "8",
        # the run must complete, not be a benchmark: on a shared 2-core runner windows vary a lot, and
        # perf_analyzer fails a run whose windows never agree within this percentage
        "--stability-percentage",
        "100",
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)


@pytest.mark.parametrize("batching", [False, True], ids=["no-batching", "dynamic-batching"])
def test_perf_analyzer_runs_to_completion(clients, bundle_fp32, batching):
    extra = ("--max-batch-size", 4, "--batch-timeout-ms", 2, "--workers", 2) if batching else ()
    with ServerProcess(bundle_fp32.server, *extra) as server:
        for protocol in ("http", "grpc"):
            run = _perf_analyzer(clients, server.address, protocol, "small")
            out = run.stdout + run.stderr
            assert run.returncode == 0, out[-3000:]
            assert "Server side statistics compute counts must be the same" not in out
            # its server-side breakdown, read from the statistics extension, for every concurrency
            breakdown = re.findall(r"compute input (\d+) usec \+ compute infer (\d+) usec \+ compute output", out)
            assert len(breakdown) >= 4 and all(int(infer) > 0 for _, infer in breakdown), out[-3000:]
            lines = [line.strip() for line in out.splitlines() if line.startswith("Concurrency:")]
            assert len(lines) == 4, out[-3000:]
            print(f"figure: perf_analyzer {protocol}, batching {batching}: " + " | ".join(lines))
        stats = json.loads(_read(f"{server.url}/v2/models/small/stats"))["model_stats"][0]
        phases = stats["inference_stats"]
        counts = {k: phases[k]["count"] for k in ("success", "compute_input", "compute_infer", "compute_output")}
        assert len(set(counts.values())) == 1 and counts["success"] > 0, counts
        for entry in stats["batch_stats"]:
            assert (
                entry["compute_input"]["count"]
                == entry["compute_infer"]["count"]
                == entry["compute_output"]["count"]
                > 0
            ), entry
        if batching:
            assert max(e["batch_size"] for e in stats["batch_stats"]) > 1, stats["batch_stats"]
        t0 = time.monotonic()
        server.terminate()
        assert server.stop() == 0, server.log()
        print(f"figure: an idle server exited {time.monotonic() - t0:.2f}s after SIGTERM (after perf_analyzer)")


def _read(url: str) -> bytes:
    import urllib.request

    with urllib.request.urlopen(url, timeout=60) as r:
        return r.read()


def test_kserve_sdk_rest_and_grpc(clients, server_fp32, val_clips, tmp_path):
    from vslim.serving.protocols.v2.client import V2HttpClient

    clip = np.ascontiguousarray(val_clips[0][:1], dtype=np.float32)
    np.save(tmp_path / "clip.npy", clip)
    with V2HttpClient(server_fp32.address, model="small") as c:
        expected = c.infer("small", {"data_batch_0": clip})["outputs"]
    run = subprocess.run(
        [
            str(clients / "bin" / "python"),
            str(ROOT / "tests" / "field_clients" / "kserve_check.py"),
            server_fp32.address,
            "small",
            str(tmp_path / "clip.npy"),
            str(tmp_path / "out.json"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads((tmp_path / "out.json").read_text())
    for key in ("rest_live", "rest_ready", "rest_model_ready", "grpc_live", "grpc_ready", "grpc_model_ready"):
        assert out[key] is True, key
    assert out["rest_metadata"]["name"] == "small" and out["grpc_metadata"]["name"] == "small"
    assert out["grpc_metadata"]["inputs"] == [["data_batch_0", "FP32", [-1, *clip.shape[1:]]]]
    for key in ("rest_json", "rest_binary", "grpc_raw", "grpc_typed"):
        np.testing.assert_allclose(np.array(out[key]), expected, rtol=1e-5, atol=1e-6, err_msg=key)
    assert out["rest_unknown"] == 404 and out["grpc_unknown"] == "NOT_FOUND"
    assert out["rest_bad_shape"][0] == 400 and "shape" in out["rest_bad_shape"][1]
    print(f"figure: KServe SDK ({sys.platform}) REST JSON/binary and gRPC raw/typed answers equal vslim's client's")
