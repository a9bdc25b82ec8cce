"""The failure catalogue: faults, load, and who gets in. Real servers and packagers, killed for real.

Counts are CI-sized; ``VSLIM_SOAK_REQUESTS`` and ``VSLIM_SCHEMATHESIS_EXAMPLES`` run them longer.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from servers import ServerProcess, start_failure

from vslim.serving.bundle import verify_bundle
from vslim.serving.client import ClientConfig, GrpcClient, HttpClient, VideoEndpointClient
from vslim.serving.errors import ServingError

pytestmark = [pytest.mark.slow, pytest.mark.server]
SOAK_REQUESTS = int(os.environ.get("VSLIM_SOAK_REQUESTS", "1000"))
CONFORMANCE_CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_schema_conformance,response_headers_conformance"
)
SCHEMATHESIS_EXAMPLES = int(os.environ.get("VSLIM_SCHEMATHESIS_EXAMPLES", "30"))
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def clip():
    return np.random.default_rng(0).standard_normal((1, 8, 3, 64, 64)).astype(np.float32)


# --------------------------------------------------------------------------- fuzzing the live HTTP API


def test_schemathesis_finds_no_server_error(bundle_fp32, tmp_path):
    """Every generated request gets an answer or a 4xx, never a 5xx, and only the statuses,
    content types and headers the OpenAPI schema documents (so the schema is the truth)."""
    with ServerProcess(bundle_fp32.server) as server:
        proc = subprocess.run(
            [
                str(BIN / "schemathesis"),
                "run",
                f"{server.url}/openapi.json",
                "--checks",
                CONFORMANCE_CHECKS,
                "--max-examples",
                str(SCHEMATHESIS_EXAMPLES),
                "--seed",
                "1",
                "--workers",
                "1",
                "--report",
                "junit",
                "--report-dir",
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
            timeout=900,
            cwd=tmp_path,
            env={**os.environ, "NO_COLOR": "1"},
        )
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
        assert "/GeneralModelService/inference" in proc.stdout and "/v2/models/{name}/infer" in proc.stdout
        print(
            "figure: schemathesis:",
            " | ".join(
                line.strip()
                for line in proc.stdout.splitlines()
                if "generated" in line.lower() or "passed" in line.lower()
            ),
        )
        # the server is still fine afterwards
        with urllib.request.urlopen(f"{server.url}/health") as r:
            assert r.status == 200


# --------------------------------------------------------------------------- load


def test_soak_every_answer_right_memory_stable(cli, bundle_int8, tmp_path):
    out = tmp_path / "soak"
    r = cli(
        "bench",
        "soak",
        "--bundle",
        bundle_int8.server,
        "--requests",
        SOAK_REQUESTS,
        "--concurrency",
        32,
        "--protocols",
        "grpc,http-proto",
        "--out",
        out,
    )
    report = json.loads((out / "soak.json").read_text())
    assert r.code == 0, r.err
    for protocol, x in report["protocols"].items():
        assert x["answered"] == SOAK_REQUESTS and x["wrong_answers"] == 0 and x["errors"] == 0, (protocol, x)
    assert report["exit_code"] == 0
    print(
        f"figure: soak: {SOAK_REQUESTS} requests x {len(report['protocols'])} protocols at concurrency 32, "
        f"RSS {report['rss_mib_start']:.0f} -> {report['rss_mib_end']:.0f} MiB, second-half growth "
        + ", ".join(f"{p} {x['rss_mib_second_half_growth']:+.1f}" for p, x in report["protocols"].items())
    )
    # stable: a leak of one request's tensor (393 KB here) would add >190 MiB over a 500-request half
    assert report["rss_growth_mib"] < 128, report
    for protocol, x in report["protocols"].items():
        assert x["rss_mib_second_half_growth"] < 48, (protocol, x)


# --------------------------------------------------------------------------- faults


def test_an_inference_exception_fails_that_request_only(bundle_fp32, clip):

    conf = ClientConfig.load(bundle_fp32.client)
    with ServerProcess(bundle_fp32.server, env={"VSLIM_INJECT_FAULTS": "inference_error_every=3"}) as server:
        assert "FAULT INJECTION ON" in server.log()
        outcomes = []
        with GrpcClient(server.address, conf) as g, HttpClient(server.address, conf, mode="json") as h:
            for i in range(6):
                client = g if i % 2 else h
                try:
                    client.predict({"data_batch_0": clip})
                    outcomes.append("ok")
                except ServingError as exc:
                    outcomes.append(str(exc))
        failed = [o for o in outcomes if o != "ok"]
        assert len(failed) == 2 and outcomes[2] != "ok" and outcomes[5] != "ok", outcomes
        assert any("INTERNAL" in f and "-5100" in f and "injected fault" in f for f in failed), failed
        assert any("HTTP 500" in f and "-5100" in f for f in failed), failed
        print(f"figure: injected faults: {outcomes}")
        with GrpcClient(server.address, conf) as g:  # and it keeps serving
            assert g.predict({"data_batch_0": clip})["outputs"].shape == (1, 10)


def test_sigkill_mid_burst_gives_errors_within_the_deadline(bundle_fp32, clip):
    conf = ClientConfig.load(bundle_fp32.client)
    server = ServerProcess(bundle_fp32.server)
    results, started = [], threading.Event()

    def client(i):
        c = (
            GrpcClient(server.address, conf, timeout=10)
            if i % 2
            else HttpClient(server.address, conf, timeout=10, mode="proto")
        )
        with c:
            for _ in range(50):
                t0 = time.perf_counter()
                try:
                    c.predict({"data_batch_0": clip})
                    started.set()
                    results.append(("ok", time.perf_counter() - t0))
                except ServingError:
                    results.append(("error", time.perf_counter() - t0))
                    return

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    assert started.wait(60)
    server.proc.kill()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads), "a client hung after the server died"
    errors = [d for kind, d in results if kind == "error"]
    assert len(errors) == 8 and max(errors) < 10.5, errors
    assert server.proc.wait(10) == -signal.SIGKILL
    print(
        f"figure: SIGKILL mid-burst: {len(results) - len(errors)} answered before, {len(errors)} clients got an "
        f"error, slowest after {max(errors):.2f} s (deadline 10 s)"
    )


def _start_packager(args, tmp_path):
    return subprocess.Popen(
        [str(BIN / "vslim-package"), *map(str, args)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, "VSLIM_PROGRESS": "0"},
    )


def _kill_when_writing(proc, parent: Path, name: str, timeout=300):
    """SIGKILL the packager (and its optimizer child) as soon as its hidden temp folder exists."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if list(parent.glob(f".{name}.tmp-*")):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
            return True
        time.sleep(0.002)
    return False


@pytest.mark.parametrize("target", ["serving", "lite"])
def test_packager_killed_mid_write_leaves_nothing_and_reruns(target, r50_fp32, fp32_small, toolchain, tmp_path):
    model = r50_fp32 if target == "serving" else fp32_small
    out = tmp_path / "out"
    args = ["--target", target, "--model-dir", model, "--out", out]
    if target == "serving":  # what is written, not which runtime wins: one runtime is enough
        args += ["--runtime", "paddle"]
    proc = _start_packager(args, tmp_path)
    assert _kill_when_writing(proc, tmp_path, "out"), "the packager finished before it could be killed"
    assert not out.exists()  # no partial bundle or .nb under the real name
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.")]
    proc = _start_packager(args, tmp_path)
    assert proc.wait(600) == 0, proc.stderr.read()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # the dead writer's temp folder is gone
    print(f"figure: {target} packager SIGKILLed mid-write: no {out.name}/, stale temp {leftovers} removed by the rerun")
    if target == "serving":
        assert verify_bundle(next(out.glob("*_serving_server")))
    else:
        assert (out / "pptsm_small_arm.nb").stat().st_size > 0


def test_two_packagers_racing_for_one_output(r50_fp32, tmp_path):
    out = tmp_path / "bundle"
    procs = [
        # one runtime: the race is over the output folder, not over which runtime is fastest (--runtime auto
        # measured every runtime twice over on 2 cores for nothing)
        _start_packager(["--target", "serving", "--runtime", "paddle", "--model-dir", r50_fp32, "--out", out], tmp_path)
        for _ in range(2)
    ]
    codes = [p.wait(600) for p in procs]
    errors = [p.stderr.read() for p in procs]
    assert sorted(codes) == [0, 2], (codes, errors)  # exactly one wins; the other says why it stopped
    print(
        f"figure: racing packagers exit codes {codes}: {[e.strip().splitlines()[-1] if e.strip() else '' for e in errors]}"
    )
    assert "already exists" in errors[codes.index(2)] or "appeared while" in errors[codes.index(2)]
    assert verify_bundle(next(out.glob("*_serving_server")))  # whole and untouched by the loser
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_truncated_model_is_refused_at_load(bundle_fp32, tmp_path):
    broken = tmp_path / "b"
    shutil.copytree(bundle_fp32.root, broken)
    model = broken / bundle_fp32.server.name / "model.pdmodel"
    model.write_bytes(model.read_bytes()[:1000])
    r = start_failure(broken / bundle_fp32.server.name)
    assert r.returncode == 2 and "model.pdmodel changed since packaging" in r.stderr


# --------------------------------------------------------------------------- security


def test_tls_and_bearer_token_on_every_protocol(bundle_fp32, clip, tls_files, token_file):
    import grpc
    import requests
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    cert, key = tls_files
    conf = ClientConfig.load(bundle_fp32.client)
    token = token_file.read_text().strip()
    with ServerProcess(
        bundle_fp32.server, "--tls-cert", cert, "--tls-key", key, "--auth-token-file", token_file
    ) as server:
        assert "TLS, bearer token" in server.log()
        ok = dict(token=token, tls_ca=str(cert))
        for protocol_client in (
            GrpcClient(server.address, conf, **ok),
            HttpClient(server.address, conf, mode="proto", **ok),
            HttpClient(server.address, conf, mode="json", **ok),
        ):
            with protocol_client as c:
                assert c.predict({"data_batch_0": clip})["outputs"].shape == (1, 10)
        video = VideoEndpointClient(server.address, **ok)
        assert video.predict_frames(np.zeros((8, 72, 96, 3), np.uint8))["err_no"] == 0
        # wrong or missing token: refused on every endpoint but health
        for bad in (None, "wrong-token-wrong-token"):
            with pytest.raises(ServingError, match="UNAUTHENTICATED"):
                with GrpcClient(server.address, conf, token=bad, tls_ca=str(cert)) as c:
                    c.predict({"data_batch_0": clip})
            with pytest.raises(ServingError, match="HTTP 401"):
                with HttpClient(server.address, conf, mode="proto", token=bad, tls_ca=str(cert)) as c:
                    c.predict({"data_batch_0": clip})
            for path in ("/metrics", "/model", "/openapi.json"):
                r = requests.get(
                    f"https://{server.address}{path}",
                    verify=str(cert),
                    timeout=30,
                    headers={"Authorization": f"Bearer {bad}"} if bad else {},
                )
                assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer"
        assert requests.get(f"https://{server.address}/health", verify=str(cert), timeout=30).status_code == 200
        channel = grpc.secure_channel(server.address, grpc.ssl_channel_credentials(cert.read_bytes()))
        assert (
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=30).status
            == health_pb2.HealthCheckResponse.SERVING
        )
        channel.close()
        # plaintext against the TLS port gets nothing useful, and the server keeps serving
        with pytest.raises(ServingError):
            with HttpClient(server.address, conf, mode="proto", token=token, timeout=10) as c:
                c.predict({"data_batch_0": clip})
        with GrpcClient(server.address, conf, **ok) as c:
            assert c.predict({"data_batch_0": clip})["outputs"].shape == (1, 10)
        with urllib.request.urlopen(
            urllib.request.Request(f"https://{server.address}/metrics", headers={"Authorization": f"Bearer {token}"}),
            context=__import__("ssl").create_default_context(cafile=str(cert)),
        ) as r:
            assert 'vslim_request_errors_total{kind="unauthenticated",model="",protocol="grpc"}' in r.read().decode()


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_idle_client_connections_do_not_hold_up_the_drain(bundle_fp32, tls_files, tls):
    """Idle keep-alive HTTP and open gRPC channels are closed by the drain, not waited for
    (Python 3.12's Server.wait_closed() waits for every connection: the drain once hung on them)."""
    import grpc
    import requests
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    cert, key = tls_files
    server = ServerProcess(bundle_fp32.server, *(["--tls-cert", cert, "--tls-key", key] if tls else []))
    try:
        scheme = "https" if tls else "http"
        session = requests.Session()  # left open: its connection idles in the pool
        assert session.get(f"{scheme}://{server.address}/health", verify=str(cert), timeout=30).status_code == 200
        channel = (
            grpc.secure_channel(server.address, grpc.ssl_channel_credentials(cert.read_bytes()))
            if tls
            else grpc.insecure_channel(server.address)
        )
        assert (
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=30).status
            == health_pb2.HealthCheckResponse.SERVING
        )
        start = time.perf_counter()
        assert server.stop(timeout=30) == 0, server.log()
        assert time.perf_counter() - start < 10, server.log()
        channel.close()
        session.close()
    finally:
        server.stop()


def test_binding_beyond_loopback_warns(bundle_fp32):
    with ServerProcess(bundle_fp32.server, "--host", "0.0.0.0") as server:
        assert "reachable from other machines" in server.log()
    with ServerProcess(bundle_fp32.server) as server:
        assert "reachable from other machines" not in server.log() and "listening on 127.0.0.1" in server.log()


def test_bad_security_settings_refuse_to_start(bundle_fp32, tmp_path, tls_files):
    weak = tmp_path / "weak"
    weak.write_text("short\n")
    r = start_failure(bundle_fp32.server, "--auth-token-file", weak)
    assert r.returncode == 2 and "at least 16 printable ASCII characters" in r.stderr
    weak.write_text("s3cret-tøken-0123456789\n")  # gRPC metadata could never carry it
    r = start_failure(bundle_fp32.server, "--auth-token-file", weak)
    assert r.returncode == 2 and "printable ASCII" in r.stderr
    r = start_failure(bundle_fp32.server, "--tls-cert", tls_files[0])
    assert r.returncode == 2 and "needs both --tls-cert and --tls-key" in r.stderr
    r = start_failure(bundle_fp32.server, "--tls-cert", tls_files[0], "--tls-key", tls_files[0])
    assert r.returncode == 2 and "cannot load the TLS certificate" in r.stderr


def test_paths_cannot_escape_the_bundle(bundle_fp32, tmp_path):
    for rel in ("../outside.txt", "/etc/passwd"):
        b = tmp_path / f"b{len(rel)}"
        shutil.copytree(bundle_fp32.root, b)
        manifest = json.loads((b / "vslim_manifest.json").read_text())
        manifest["files"][rel] = {"sha256": "0" * 64, "bytes": 1}
        (b / "vslim_manifest.json").write_text(json.dumps(manifest))
        server_dir = b / bundle_fp32.server.name
        if rel.startswith("/"):  # an absolute path cannot hide behind the server-folder prefix
            manifest["files"] = {f"{server_dir.name}/{rel}": {"sha256": "0"}, **manifest["files"]}
            (b / "vslim_manifest.json").write_text(json.dumps(manifest))
        r = start_failure(server_dir)
        assert r.returncode == 2 and ("outside the bundle" in r.stderr or "missing" in r.stderr), r.stderr
    b = tmp_path / "meta"
    shutil.copytree(bundle_fp32.root, b)
    meta_path = b / bundle_fp32.server.name / "vslim.json"
    meta = json.loads(meta_path.read_text())
    meta["model_file"] = "../../../../etc/hostname"
    meta_path.write_text(json.dumps(meta))
    from vslim.errors import ModelError
    from vslim.inference import inspect_model

    with pytest.raises(ModelError, match="only a plain file name"):
        inspect_model(b / bundle_fp32.server.name)


def test_server_code_never_unpickles():
    """Requests and bundles are protobuf, JSON and Paddle's tensor files; pickle stays out of the server."""
    from conftest import REPO

    for path in (REPO / "serving").glob("*.py"):
        text = path.read_text()
        assert "pickle" not in text and "paddle.load" not in text and "read_state_dict" not in text, path


def test_an_answer_sent_while_the_client_still_uploads_reaches_it(server_fp32):
    """A request refused before its body is in must get its answer, not a reset that loses it.

    uvicorn answers a malformed request (here a Content-Length that is not a number)
    with 400 and closes at once, while the client is still writing. The port sharer
    must keep reading (and dropping) the rest for a moment, or the kernel resets the
    connection and a client such as urllib sees "Broken pipe" instead of the answer.
    """
    import socket

    chunk = b"x" * (1 << 20)
    for attempt in range(3):
        with socket.create_connection(("127.0.0.1", server_fp32.port), timeout=30) as s:
            s.sendall(b"POST /v2/models/small/infer HTTP/1.1\r\nHost: t\r\nContent-Length: 12abc\r\n\r\n")
            for _ in range(64):  # 64 MiB, more than the socket buffers hold, written whatever the server does
                try:
                    s.sendall(chunk)
                except (BrokenPipeError, ConnectionResetError) as exc:
                    pytest.fail(f"attempt {attempt}: the connection was reset while uploading ({exc})")
            assert s.recv(300).startswith(b"HTTP/1.1 400"), attempt
    assert server_fp32.proc.poll() is None
