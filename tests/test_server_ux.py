"""What vslim-serve says to a person: wrong --bundle paths, bad flags, its log, and /docs without internet.

Every message is checked through the real CLI (``serve_main`` with its parsing and
error handling); the log and /docs through real server processes on 127.0.0.1.
"""

from __future__ import annotations

import http.client
import json
import re
import shlex
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from servers import ServerProcess

from vslim.cli.main import package_main, serve_main
from vslim.serving.errors import ServingError

pytestmark = pytest.mark.server


@pytest.fixture
def serve_cli(capsys):
    """``vslim-serve ARGS`` in this process: (exit code, stderr, stdout)."""

    def run(*argv):
        capsys.readouterr()
        code = serve_main([str(a) for a in argv])
        captured = capsys.readouterr()
        return code, captured.err.strip(), captured.out

    return run


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A real exported model folder (inference.pdmodel + vslim.json), random weights: nothing here needs accuracy."""
    from vslim.export import export_model

    return export_model(None, tmp_path_factory.mktemp("ux") / "fp32", arch="pptsm_small", num_classes=10)


@pytest.fixture(scope="module")
def bundle(model_dir, tmp_path_factory):
    from vslim.serving.bundle import package_serving
    from vslim.serving.config import ServingPackageConfig

    return package_serving(
        ServingPackageConfig(str(model_dir), str(tmp_path_factory.mktemp("ux") / "out"), name="small")
    )


def _one_line_error(code, err) -> str:
    assert code == 2, err
    assert err.startswith("vslim-serve: error: ") and "\n" not in err, err
    return err


# --------------------------------------------------------------------------- --bundle is not a bundle


@pytest.mark.slow
def test_a_model_folder_gets_the_package_command_that_makes_a_bundle_of_it(serve_cli, model_dir, tmp_path, capsys):
    model = tmp_path / "fp32"
    shutil.copytree(model_dir, model)
    err = _one_line_error(*serve_cli("--bundle", model)[:2])
    assert f"{model} is a model folder" in err and "not a serving bundle" in err, err
    assert "no serving_server_conf.prototxt" not in err
    # the advice is two commands that work as given
    package_cmd, serve_cmd = re.findall(r"`([^`]+)`", err)
    assert package_cmd.startswith(f"vslim-package --target serving --model-dir {model} --out "), package_cmd
    assert serve_cmd.startswith("vslim-serve --bundle "), serve_cmd
    # --runtime paddle: the CLI's default measures every runtime, which this test has no need to wait for
    capsys.readouterr()
    assert package_main([*shlex.split(package_cmd)[1:], "--runtime", "paddle"]) == 0
    suggested = shlex.split(serve_cmd)[-1]
    assert suggested.endswith("_serving_server") and Path(suggested).is_dir(), suggested


@pytest.mark.slow
def test_a_file_in_a_model_folder_points_at_its_folder(serve_cli, model_dir):
    err = _one_line_error(*serve_cli("--bundle", next(model_dir.glob("*.pdmodel")))[:2])
    assert "is a file" in err and f"{model_dir} is a model folder" in err and "vslim-package --target serving" in err


@pytest.mark.slow
def test_the_folder_vslim_package_wrote_names_its_server_half(serve_cli, bundle):
    err = _one_line_error(*serve_cli("--bundle", bundle.root)[:2])
    assert f"--bundle {bundle.server}" in err and "not its server half" in err, err


@pytest.mark.slow
def test_a_folder_of_bundles_names_every_bundle(serve_cli, bundle, tmp_path):
    for name in ("fp32", "int8"):
        shutil.copytree(bundle.root, tmp_path / name)
    err = _one_line_error(*serve_cli("--bundle", tmp_path)[:2])
    assert "holds 2 serving bundles" in err, err
    for name in ("fp32", "int8"):
        assert str(tmp_path / name / bundle.server.name) in err


@pytest.mark.slow
def test_the_client_half_points_at_the_server_half(serve_cli, bundle):
    err = _one_line_error(*serve_cli("--bundle", bundle.client)[:2])
    assert "client half" in err and f"--bundle {bundle.server}" in err, err


@pytest.mark.slow
def test_a_plain_file_and_a_missing_path(serve_cli, bundle, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a bundle\n")
    err = _one_line_error(*serve_cli("--bundle", notes)[:2])
    assert f"{notes} is a file" in err and "NAME_serving_server folder" in err, err
    err = _one_line_error(*serve_cli("--bundle", bundle.server / "serving_server_conf.prototxt")[:2])
    assert f"give its folder: --bundle {bundle.server}" in err, err
    err = _one_line_error(*serve_cli("--bundle", tmp_path / "nowhere")[:2])
    assert "does not exist" in err and "vslim-package --target serving --model-dir" in err, err
    # the bundle's name without its _serving_server suffix
    err = _one_line_error(*serve_cli("--bundle", bundle.root / "small")[:2])
    assert f"did you mean --bundle {bundle.server}?" in err, err


def test_an_empty_folder_says_what_a_bundle_is(serve_cli, tmp_path):
    err = _one_line_error(*serve_cli("--bundle", tmp_path)[:2])
    assert "is not a serving bundle" in err and "vslim-package --target serving" in err, err


# --------------------------------------------------------------------------- flags


@pytest.mark.parametrize(
    "args, message",
    [
        (["--workers", "0"], "--workers must be >= 1, got 0"),
        (["--threads", "0"], "--threads must be >= 1, got 0"),
        (["--max-batch-size", "0"], "--max-batch-size must be >= 1, got 0"),
        (["--max-body-mb", "0"], "--max-body-mb must be >= 1, got 0"),
        (["--max-request-batch", "-3"], "--max-request-batch must be >= 1, got -3"),
        (["--batch-timeout-ms", "-1"], "--batch-timeout-ms must be a number >= 0, got -1.0"),
        (["--batch-timeout-ms", "nan"], "--batch-timeout-ms must be a number >= 0, got nan"),
        (["--grace-seconds", "-5"], "--grace-seconds must be a number >= 0, got -5.0"),
        (["--port", "70000"], "--port must be 0-65535 (0: any free port), got 70000"),
        (
            ["--tls-key", "{tmp}/key.pem"],
            "TLS needs both --tls-cert and --tls-key; --tls-key was given without --tls-cert",
        ),
        (["--auth-token-file", "{tmp}/no-token"], "--auth-token-file {tmp}/no-token does not exist"),
        (["--auth-token-file", "{tmp}"], "--auth-token-file {tmp} is a folder"),
        # Ray's settings, checked before anything is deployed (--ray-config only prints)
        (["--ray-config", "--replicas", "0"], "--replicas must be >= 1, got 0"),
        (["--ray-config", "--cpus-per-replica", "0"], "--cpus-per-replica must be > 0, got 0.0"),
        (["--ray-config", "--target-ongoing-requests", "nan"], "--target-ongoing-requests must be > 0, got nan"),
        (["--ray-config", "--max-replicas-per-node", "0"], "--max-replicas-per-node must be >= 1, got 0"),
        (["--ray-config", "--memory-per-replica-mb", "0"], "--memory-per-replica-mb must be >= 1, got 0"),
        (["--ray-config", "--grpc-port", "8000"], "--port and --grpc-port are both 8000"),
        (["--ray-config", "--workers", "0"], "--workers must be >= 1, got 0"),
    ],
)
def test_each_bad_flag_is_named_as_typed(serve_cli, tmp_path, args, message):
    (tmp_path / "key.pem").write_text("not really a key\n")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    code, err, _ = serve_cli("--bundle", tmp_path / "b_serving_server", *args)
    assert message.replace("{tmp}", str(tmp_path)) in _one_line_error(code, err), err


def test_a_bad_log_level_is_refused_by_the_parser_and_the_config(serve_cli):
    from vslim.errors import ConfigError
    from vslim.serving.config import ServerConfig

    with pytest.raises(SystemExit) as exc:
        serve_cli("--bundle", "b", "--log-level", "loud")
    assert exc.value.code == 2
    with pytest.raises(ConfigError, match="--log-level must be one of debug, info, warning, error, got 'loud'"):
        ServerConfig(bundle="b", log_level="loud").validate()


def test_help_describes_the_command_and_each_flags_values(capsys):
    with pytest.raises(SystemExit):
        serve_main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "Serve a Paddle Serving bundle" in text and "examples:" in text
    for expected in (
        "--workers N inference workers",
        ">= 1 (default: 1)",
        "--threads N CPU threads per worker",
        "1 = off (default: 1)",
        "--batch-timeout-ms MS",
        ">= 0 (default: 2.0)",
        "0 = any free port",
        "(default: 9393)",
        "(default: 127.0.0.1)",
        "--log-level {debug,info,warning,error}",
        "(default: info)",
        "--no-access-log",
        "(default: 64)",
        "(default: 30.0)",
    ):
        assert expected in text, expected


# --------------------------------------------------------------------------- the log


def _wait_for(server: ServerProcess, pattern: str, timeout: float = 30.0) -> re.Match:
    """The first log line matching ``pattern`` (the line is written once the answer has gone out)."""
    deadline = time.monotonic() + timeout
    while True:
        match = re.search(pattern, server.log())
        if match or time.monotonic() > deadline:
            assert match, f"no line matching {pattern!r} in:\n{server.log()}"
            return match
        time.sleep(0.05)


def _get(server: ServerProcess, path: str):
    """GET over a connection whose local port we know, so the log's peer can be checked exactly."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    conn.connect()
    port = conn.sock.getsockname()[1]
    conn.request("GET", path)
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, body, port


def _grpc_inference(server: ServerProcess, bundle) -> None:
    from vslim.serving.client import ClientConfig, GrpcClient

    conf = ClientConfig.load(bundle.client)
    feed = conf.signature.feeds[0]
    clip = np.zeros([1, *[d if d > 0 else 1 for d in feed.shape]], np.float32)
    with GrpcClient(server.address, conf) as client:
        assert client.predict({feed.alias: clip})["outputs"].shape[0] == 1


@pytest.fixture(scope="module")
def server(bundle):
    server = ServerProcess(bundle.server)
    yield server
    assert server.stop() == 0, server.log()


@pytest.mark.slow
def test_every_http_request_gets_an_access_line_with_the_real_peer(server):
    status, _, port = _get(server, "/health")
    assert status == 200
    _wait_for(server, rf"vslim-serve: access 127\.0\.0\.1:{port} HTTP GET /health 200 \d+\.\d ms")
    status, _, port = _get(server, "/no/such/path")
    assert status == 404
    _wait_for(server, rf"vslim-serve: access 127\.0\.0\.1:{port} HTTP GET /no/such/path 404 \d+\.\d ms")


@pytest.mark.slow
def test_every_grpc_call_gets_an_access_line(server, bundle):
    _grpc_inference(server, bundle)
    _wait_for(
        server,
        r"vslim-serve: access 127\.0\.0\.1:\d+ gRPC "
        r"/baidu\.paddle_serving\.predictor\.general_model\.GeneralModelService/inference OK \d+\.\d ms",
    )
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(server.address) as channel, pytest.raises(grpc.RpcError):
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=30)
    _wait_for(server, r"vslim-serve: access 127\.0\.0\.1:\d+ gRPC /grpc\.health\.v1\.Health/Check NOT_FOUND")


@pytest.mark.slow
@pytest.mark.parametrize("flag", [["--log-level", "warning"], ["--no-access-log"]])
def test_access_lines_can_be_turned_off(bundle, flag):
    quiet = ServerProcess(bundle.server, *flag)
    try:
        status, _, _ = _get(quiet, "/health")
        assert status == 200
        _grpc_inference(quiet, bundle)
    finally:
        assert quiet.stop() == 0, quiet.log()
    log = quiet.log()
    assert "ready in" in log and "stopped" in log  # the start-up and shutdown lines stay at every level
    assert "access" not in log, log


@pytest.mark.slow
def test_stdout_stays_empty(bundle, tmp_path):
    """Logs go to stderr; anything on stdout would break tools that pipe vslim commands together."""
    import signal
    import subprocess

    from vslim.serving.process import serve_command

    out = tmp_path / "stdout"
    with open(out, "w") as stdout:
        proc = subprocess.Popen(
            [*serve_command(), "--bundle", str(bundle.server), "--port", "0"],
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            for line in proc.stderr:
                if "ready in" in line:
                    break
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=60)
    assert proc.returncode == 0 and out.read_text() == ""


# --------------------------------------------------------------------------- /docs


@pytest.mark.slow
@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_everything_from_the_server(server, page):
    status, body, _ = _get(server, page)
    assert status == 200
    html = body.decode()
    assert "://" not in html and "cdn" not in html.lower(), html  # nothing from the internet
    urls = re.findall(r"""(?:src|href|spec-url)=["']([^"']+)["']|url: ?["']([^"']+)["']""", html)
    urls = [a or b for a, b in urls]
    assert any(u.endswith(".js") for u in urls), urls
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), url
        status, asset, _ = _get(server, url)
        assert status == 200 and len(asset) > 100, (url, status)
    assert "/openapi.json" in html
    _, doc, _ = _get(server, "/openapi.json")
    assert "/v2/models/{name}/infer" in json.loads(doc)["paths"]


def test_docs_without_swagger_files_is_a_plain_page_that_says_so(monkeypatch):
    import asyncio

    import httpx
    from fastapi import FastAPI

    from vslim.serving import openapi

    monkeypatch.setattr(openapi, "docs_assets_dir", lambda: None)
    app = FastAPI(title="t", docs_url=None, redoc_url=None)

    @app.get("/health", summary="is it up")
    def health():
        return {}

    openapi.add_docs(app)

    async def get(path):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://vslim") as client:
            return await client.get(path)

    page = asyncio.run(get("/docs")).text
    assert "Offline page" in page and "not installed" in page and "/health" in page and "is it up" in page
    assert "://" not in page
    assert asyncio.run(get("/redoc")).headers["location"] == "/docs"
    assert asyncio.run(get("/docs/assets/swagger-ui-bundle.js")).status_code == 404


def test_relay_names_carry_the_client_address():
    from vslim.serving.peers import format_peer, grpc_peer, relay_name, relayed_peer

    for peer in (("10.1.2.3", 51234), ("::1", 443, 0, 0)):
        name = relay_name(peer)
        assert relayed_peer(b"\0" + name.encode()) == (peer[0], peer[1])
        # gRPC percent-encodes the abstract name in context.peer()
        encoded = "unix-abstract:" + name.replace("[", "%5B").replace("]", "%5D").replace(" ", "%20")
        assert relayed_peer(encoded) == (peer[0], peer[1])
    assert format_peer(("::1", 443)) == "[::1]:443" and format_peer(None) == "-"
    assert relayed_peer("unix:/tmp/x.sock") is None and relayed_peer(b"") is None
    assert grpc_peer("ipv4:127.0.0.1:5000") == "127.0.0.1:5000"


# --------------------------------------------------------------------------- Triton's layout: a port per transport


def test_grpc_port_gives_each_transport_its_own_port_with_every_protocol(bundle, tls_files, token_file):
    """``--grpc-port`` (with ``--port``/``--http-port`` for HTTP): both listen themselves, nothing relayed; every
    protocol answers on its transport's port, the same answer as on one shared port; TLS and the token hold
    on both; the log names each client's own address; SIGTERM drains, exit 0."""
    import grpc
    import tritonclient.grpc as tgrpc
    import tritonclient.http as thttp

    from vslim.serving.client import ClientConfig, make_client

    cert, key = tls_files
    token = token_file.read_text().strip()
    conf = ClientConfig.load(bundle.client)
    clip = np.random.default_rng(3).standard_normal((1, *conf.signature.feeds[0].shape)).astype(np.float32)
    with ServerProcess(bundle.server) as shared:
        expected = make_client("grpc", shared.address, conf).predict({"data_batch_0": clip})["outputs"]
    with ServerProcess(bundle.server, "--grpc-port", 0) as split:
        assert split.grpc_port != split.port
        assert any(
            f"listening on 127.0.0.1:{split.port} (HTTP: " in line and f"127.0.0.1:{split.grpc_port} (gRPC: " in line
            for line in split.lines
        ), split.log()
        for protocol in ("grpc", "v2-grpc", "http", "http-proto", "v2-http"):
            address = split.grpc_address if protocol.endswith("grpc") else split.address
            with make_client(protocol, address, conf, timeout=30) as client:
                got = client.predict({"data_batch_0": clip})["outputs"]
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6, err_msg=protocol)
        # Triton's own clients, each to its transport's port, unmodified
        assert thttp.InferenceServerClient(split.address).is_server_ready()
        assert tgrpc.InferenceServerClient(split.grpc_address).is_model_ready("small")
        # each port speaks its transport only: gRPC on the HTTP port gets no answer from a gRPC server
        with make_client("v2-grpc", split.address, conf, timeout=10) as client, pytest.raises(ServingError):
            client.predict({"data_batch_0": clip})
        assert re.search(r"access 127\.0\.0\.1:\d+ gRPC /inference\.GRPCInferenceService/ModelInfer OK", split.log())
        assert re.search(r"access 127\.0\.0\.1:\d+ HTTP POST /v2/models/small/infer 200", split.log())
    assert split.proc.returncode == 0, split.log()
    with ServerProcess(
        bundle.server,
        "--grpc-port",
        0,
        "--tls-cert",
        cert,
        "--tls-key",
        key,
        "--auth-token-file",
        token_file,
    ) as secure:
        for protocol in ("grpc", "v2-grpc", "http", "v2-http"):
            address = secure.grpc_address if protocol.endswith("grpc") else secure.address
            with make_client(protocol, address, conf, timeout=30, token=token, tls_ca=str(cert)) as client:
                got = client.predict({"data_batch_0": clip})["outputs"]
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6, err_msg=protocol)
            with make_client(protocol, address, conf, timeout=30, token="wrong-token-wrong", tls_ca=str(cert)) as c:
                with pytest.raises(Exception, match="401|UNAUTHENTICATED"):
                    c.predict({"data_batch_0": clip})
        with grpc.insecure_channel(secure.grpc_address) as plain:  # TLS only: a plaintext channel gets nowhere
            with pytest.raises(grpc.FutureTimeoutError):
                grpc.channel_ready_future(plain).result(timeout=3)


def test_grpc_port_refusals_name_the_flag(serve_cli, bundle):
    import socket

    err = _one_line_error(*serve_cli("--bundle", bundle.server, "--port", 9500, "--grpc-port", 9500)[:2])
    assert "--grpc-port 9500 is --port's too" in err
    err = _one_line_error(*serve_cli("--bundle", bundle.server, "--grpc-port", 70000)[:2])
    assert "--grpc-port must be 0-65535" in err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, err, _ = serve_cli("--bundle", bundle.server, "--port", 0, "--grpc-port", port)
        assert code == 2 and f"cannot listen on 127.0.0.1:{port} (gRPC)" in err and "--grpc-port" in err, err
        code, err, _ = serve_cli("--bundle", bundle.server, "--port", port, "--grpc-port", 0)
        assert code == 2 and f"cannot listen on 127.0.0.1:{port} (HTTP)" in err and "--port" in err, err
