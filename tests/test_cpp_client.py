"""The C++ client: built from a clean tree with CMake (warnings on), run against real servers."""

import json
import os
import shutil
import socket
import subprocess

import numpy as np
import pytest
from servers import ServerProcess

from vslim.accuracy import softmax, topk
from vslim.serving.client import ClientConfig, GrpcClient

pytestmark = pytest.mark.slow


def run(binary, *args, timeout=120):
    return subprocess.run([str(binary), *map(str, args)], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def servers(bundle_fp32, bundle_int8):
    started = {"fp32": ServerProcess(bundle_fp32.server), "int8": ServerProcess(bundle_int8.server)}
    yield started
    for server in started.values():
        assert server.stop() == 0, server.log()


@pytest.fixture(scope="module")
def clip_file(synth_data, bundle_fp32, tmp_path_factory):
    from vslim.data import ClipPipeline

    meta = ClientConfig.load(bundle_fp32.client).meta
    clips = np.stack(
        [
            ClipPipeline(meta.preprocess).from_video(synth_data / "videos" / "val" / name)
            for name in sorted(os.listdir(synth_data / "videos" / "val"))[:2]
        ]
    )
    path = tmp_path_factory.mktemp("npy") / "clips.npy"
    np.save(path, clips)
    return path


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_cpp_top_k_equals_the_python_client(
    cpp_client, servers, clip_file, bundle_fp32, bundle_int8, precision, tmp_path
):
    bundle = bundle_fp32 if precision == "fp32" else bundle_int8
    server = servers[precision]
    clips = np.load(clip_file)
    with GrpcClient(server.address, ClientConfig.load(bundle.client)) as client:
        logits = client.predict({"data_batch_0": clips})["outputs"]
    one = tmp_path / "one.npy"
    np.save(one, clips[0])  # without the batch dimension: the client adds it
    for path, rows in ((clip_file, 2), (one, 1)):
        r = run(
            cpp_client, "--address", server.address, "--bundle", bundle.client, "--input", path, "--top-k", 5, "--json"
        )
        assert r.returncode == 0, r.stderr
        answer = json.loads(r.stdout)
        assert answer["fetch"] == "outputs" and answer["shape"] == [rows, 10]
        for i, sample in enumerate(answer["samples"]):
            ids, scores = topk(softmax(logits[i]), 5)
            assert sample["classes"] == ids.tolist()
            np.testing.assert_allclose(sample["scores"], scores, rtol=1e-5, atol=1e-6)


def test_cpp_prints_paddlevideo_style_lines_and_latency(cpp_client, servers, clip_file, bundle_int8):
    r = run(
        cpp_client,
        "--port",
        servers["int8"].port,
        "--bundle",
        bundle_int8.client / "serving_client_conf.prototxt",
        "--input",
        clip_file,
        "--top-k",
        2,
        "--repeat",
        20,
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"Current input: {clip_file} (sample 0 of 2)"
    assert lines[1].startswith("\ttop-1 class: ") and lines[2].startswith("\ttop-1 score: ")
    latency = lines[-1]
    assert latency.startswith("latency over 20 calls: p50 ")
    p50, p90, p99 = (float(x.split()[1]) for x in latency.split(": ", 1)[1].split(", "))
    assert 0 < p50 <= p90 <= p99


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cpp_bad_input(cpp_client, servers, clip_file, bundle_fp32, tmp_path):
    port = servers["fp32"].port
    conf = bundle_fp32.client
    cases = []
    # no server listening: the sentence vslim-client says too
    closed = _free_port()
    cases.append(
        (
            (["--port", closed, "--bundle", conf, "--input", clip_file, "--timeout-ms", 5000]),
            3,
            f"vslim_cpp_client: error: no server at 127.0.0.1:{closed} — is vslim-serve running? "
            "(connection refused)\n",
        )
    )
    # missing and malformed config
    cases.append(((["--port", port, "--bundle", tmp_path / "nope", "--input", clip_file]), 2, "cannot be read"))
    bad_conf = tmp_path / "bad.prototxt"
    bad_conf.write_text('feed_var { name: "data_batch_0" feed_type: 1 shape: [8 }\n')
    cases.append(
        ((["--port", port, "--bundle", bad_conf, "--input", clip_file]), 2, "is not a valid GeneralModelConfig: line 1")
    )
    # wrong shape, wrong dtype, not a .npy
    np.save(tmp_path / "shape.npy", np.zeros((1, 4, 3, 64, 64), np.float32))
    cases.append(
        (
            (["--port", port, "--bundle", conf, "--input", tmp_path / "shape.npy"]),
            2,
            "has shape [1, 4, 3, 64, 64] but the model expects [-1, 8, 3, 64, 64]",
        )
    )
    np.save(tmp_path / "f64.npy", np.zeros((1, 8, 3, 64, 64)))
    cases.append(((["--port", port, "--bundle", conf, "--input", tmp_path / "f64.npy"]), 2, "has dtype '<f8'"))
    (tmp_path / "text.npy").write_text("not numpy")
    cases.append(((["--port", port, "--bundle", conf, "--input", tmp_path / "text.npy"]), 2, "is not a .npy file"))
    cases.append(
        (
            (["--port", port, "--bundle", conf, "--input", clip_file, "--top-k", "zero"]),
            2,
            "--top-k needs a whole number",
        )
    )
    # a server error: the client config claims a shape the served model does not take
    other = tmp_path / "other_serving_client"
    shutil.copytree(conf, other)
    text = (other / "serving_client_conf.prototxt").read_text().replace("shape: 64", "shape: 32")
    (other / "serving_client_conf.prototxt").write_text(text)
    np.save(tmp_path / "small.npy", np.zeros((1, 8, 3, 32, 32), np.float32))
    cases.append(
        (
            (["--port", port, "--bundle", other, "--input", tmp_path / "small.npy"]),
            3,
            "gRPC INVALID_ARGUMENT (err_no 5000): feed 'data_batch_0' has shape [1, 8, 3, 32, 32]",
        )
    )
    for args, code, message in cases:
        r = run(cpp_client, *args)
        assert r.returncode == code and message in r.stderr, (args, r.returncode, r.stderr)
        assert "vslim_cpp_client: error: " in r.stderr and "terminate called" not in r.stderr
    # and the server still answers
    assert run(cpp_client, "--port", port, "--bundle", conf, "--input", clip_file).returncode == 0


def test_cpp_client_over_tls_with_a_bearer_token(cpp_client, bundle_int8, clip_file, tls_files, token_file, tmp_path):
    """The C++ client reaches a locked-down server, and is refused without the token or the CA."""
    cert, key = tls_files
    with ServerProcess(
        bundle_int8.server, "--tls-cert", cert, "--tls-key", key, "--auth-token-file", token_file
    ) as server:
        base = [
            "--port",
            server.port,
            "--bundle",
            bundle_int8.client,
            "--input",
            clip_file,
            "--json",
            "--timeout-ms",
            10000,
        ]
        r = run(cpp_client, *base, "--tls-ca", cert, "--auth-token-file", token_file)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["shape"] == [2, 10]
        wrong = tmp_path / "wrong"
        wrong.write_text("wrong-token-wrong-token")
        r = run(cpp_client, *base, "--tls-ca", cert, "--auth-token-file", wrong)
        assert r.returncode == 3 and "gRPC UNAUTHENTICATED" in r.stderr, r.stderr
        r = run(cpp_client, *base, "--tls-ca", cert)
        assert r.returncode == 3 and "gRPC UNAUTHENTICATED" in r.stderr, r.stderr
        r = run(cpp_client, *base, "--auth-token-file", token_file)  # plaintext against the TLS port
        assert r.returncode == 3 and "gRPC UNAVAILABLE" in r.stderr, r.stderr
        assert "no server at" not in r.stderr  # something did answer: not the "start the server" message
        r = run(cpp_client, *base, "--tls-ca", tmp_path / "missing.pem", "--auth-token-file", token_file)
        assert r.returncode == 2 and "TLS CA certificate" in r.stderr and "cannot be read" in r.stderr
        (tmp_path / "empty").write_text("\n")
        r = run(cpp_client, *base, "--tls-ca", cert, "--auth-token-file", tmp_path / "empty")
        assert r.returncode == 2 and "is empty" in r.stderr
        (tmp_path / "two-lines").write_text("s3cret-token-0123456789\nsecond-line\n")
        r = run(cpp_client, *base, "--tls-ca", cert, "--auth-token-file", tmp_path / "two-lines")
        assert r.returncode == 2 and "printable ASCII without spaces" in r.stderr, r.stderr


def test_cpp_flag_aliases_address_and_bundle_forms(cpp_client, servers, clip_file, bundle_fp32):
    """--bundle/--client-conf, --top-k/--topk, --address/--host (+ --port): every spelling, one answer."""
    server = servers["fp32"]
    ref = run(cpp_client, "--address", server.address, "--bundle", bundle_fp32.client, "--input", clip_file, "--json")
    assert ref.returncode == 0, ref.stderr
    samples = json.loads(ref.stdout)["samples"]
    assert [len(s["classes"]) for s in samples] == [1, 1]  # --top-k defaults to 1
    for form in (
        ["--host", "127.0.0.1", "--port", server.port, "--client-conf", bundle_fp32.client, "--topk", 1],
        ["--address", "127.0.0.1", "--port", server.port, "--bundle", bundle_fp32.root],
        ["--address", f"localhost:{server.port}", "--bundle", bundle_fp32.server, "--top-k", 1],
        ["--host", f"127.0.0.1:{server.port}", "--bundle", bundle_fp32.client / "serving_client_conf.prototxt"],
    ):
        r = run(cpp_client, *form, "--input", clip_file, "--json")
        assert r.returncode == 0, (form, r.stderr)
        assert json.loads(r.stdout)["samples"] == samples, form
    # an IPv6 address is bracketed in gRPC's target and in the message; the server listens on 127.0.0.1 only
    r = run(cpp_client, "--address", f"[::1]:{server.port}", "--bundle", bundle_fp32.root, "--input", clip_file)
    assert r.returncode == 3, r.stderr
    said = f"vslim_cpp_client: error: no server at [::1]:{server.port} — is vslim-serve running? ("
    assert r.stderr.startswith(said), r.stderr
    for flags, message in (
        (["--address", "127.0.0.1:1", "--port", 2], "name different ports; give the port once"),
        (["--address", "[::1"], "address '[::1' is not valid; give HOST[:PORT]"),
        (["--address", "host:0"], "(port 1-65535, default 9393)"),
        ([], "--bundle is required"),
    ):
        r = run(cpp_client, *flags, *([] if not flags else ["--bundle", bundle_fp32.client]), "--input", clip_file)
        assert r.returncode == 2 and message in r.stderr, (flags, r.stderr)


def test_cpp_help_lists_defaults_aliases_and_exit_statuses(cpp_client):
    r = run(cpp_client, "--help")
    assert r.returncode == 0 and r.stderr == ""
    text = " ".join(r.stdout.split())
    for needle in (
        "--bundle PATH",
        "alias --client-conf",
        "--top-k K",
        "(default 1; alias --topk)",
        "--address HOST[:PORT]",
        "without a port, 9393",
        "default 127.0.0.1:9393; alias --host",
        "(default 30000)",
        "exit status: 0 success; 2 bad flags, bundle or input; 3 no server at the address",
    ):
        assert needle in text, needle
