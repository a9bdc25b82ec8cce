"""vslim-client as a user meets it: addresses without a port, no server listening, flag names, one output shape.

The C++ client's side of the same agreements is in test_cpp_client.py; the port-less case against a real
server on 9393 covers both clients at once (one server start).
"""

import json
import socket

import numpy as np
import pytest
from servers import ServerProcess

from vslim.errors import ConfigError
from vslim.serving.client import DEFAULT_PORT, normalize_address, split_address
from vslim.serving.errors import INVALID, NOT_FOUND, UNAVAILABLE, ClientError, ServerUnreachableError, ServingError

pytestmark = pytest.mark.server

PROTOCOLS = ("grpc", "http", "http-proto", "v2-http", "v2-grpc", "video", "video-file")
ENTRY_KEYS = {"source", "classes", "scores", "labels"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def no_server(address: str, cause: str = "connection refused") -> str:
    return f"no server at {address} — is vslim-serve running? ({cause})"


# --------------------------------------------------------------------------- addresses (no server needed)


@pytest.mark.parametrize(
    "given, expected",
    [
        ("localhost", "localhost:9393"),
        ("127.0.0.1", "127.0.0.1:9393"),
        ("127.0.0.1:8500", "127.0.0.1:8500"),
        ("[::1]", "[::1]:9393"),
        ("[::1]:8500", "[::1]:8500"),
        ("::1", "[::1]:9393"),
        ("http://10.0.0.5", "10.0.0.5:9393"),
        ("https://serving.example:443/", "serving.example:443"),
        ("  host.example:1  ", "host.example:1"),
    ],
)
def test_an_address_without_a_port_means_9393(given, expected):
    assert normalize_address(given) == expected
    host, port = split_address(given)
    assert port == (DEFAULT_PORT if expected.endswith(":9393") else int(expected.rsplit(":", 1)[1]))
    assert host == expected.rsplit(":", 1)[0].strip("[]")


@pytest.mark.parametrize("bad", ["", ":9393", "host:", "host:0", "host:65536", "host:grpc", "[::1", "[::1]9393"])
def test_a_malformed_address_is_refused_naming_the_accepted_forms(bad):
    with pytest.raises(ConfigError, match=r"give HOST\[:PORT\], e\.g\. 127\.0\.0\.1:9393"):
        normalize_address(bad)


def test_client_help_says_defaults_valid_values_and_aliases(capsys):
    from vslim.cli.main import client_main

    with pytest.raises(SystemExit) as done:
        client_main(["--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for needle in (
        "--bundle PATH, --client-conf PATH",
        "--video FILE, --input-file FILE",
        "classes to print, best first (>= 1; default: 1)",
        "without a port, 9393",
        "(default: 127.0.0.1:9393)",
        "one of: grpc, http, http-proto, v2-grpc, v2-http, v2-grpc-shm, video, video-file",
        "default: grpc",
        "in seconds (> 0; default: 60.0)",
        "3 no server at --address",
    ):
        assert needle in text, needle


def test_bad_numbers_are_refused_before_connecting(cli, tmp_path):
    video = tmp_path / "v.mp4"
    video.write_bytes(b"not looked at")
    base = ("client", "--bundle", tmp_path, "--video", video, "--address", f"127.0.0.1:{free_port()}")
    for flags, message in (
        (("--top-k", 0), "--top-k must be >= 1, got 0"),
        (("--timeout", 0), "--timeout must be > 0 seconds"),
        (("--address", "host:99999"), "address 'host:99999' has port '99999'"),
    ):
        r = cli(*base, *flags)
        assert r.code == 2 and message in r.err and r.out == "", r.err


# --------------------------------------------------------------------------- no server listening


@pytest.mark.slow
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_no_server_listening_is_one_line_and_exit_3(cli, bundle_fp32, synth_data, protocol):
    port = free_port()  # closed again: nothing listens there
    r = cli(
        "client",
        "--bundle",
        bundle_fp32.client,
        "--video",
        synth_data / "demo.mp4",
        "--address",
        f"127.0.0.1:{port}",
        "--protocol",
        protocol,
        "--timeout",
        20,
    )
    assert r.code == 3, r.err
    assert r.err == f"vslim: error: {no_server(f'127.0.0.1:{port}')}\n"
    assert r.out == ""


@pytest.mark.slow
def test_the_library_clients_raise_server_unreachable(bundle_fp32):
    from vslim.serving.client import ClientConfig, VideoEndpointClient, make_client

    conf = ClientConfig.load(bundle_fp32.client)
    clip = np.zeros((1, *conf.signature.feeds[0].shape), np.float32)
    port = free_port()
    for protocol in ("grpc", "http", "http-proto", "v2-http", "v2-grpc"):
        with make_client(protocol, f"127.0.0.1:{port}", conf, timeout=20) as client:
            with pytest.raises(ServerUnreachableError) as info:
                client.predict({"data_batch_0": clip})
        assert str(info.value) == no_server(f"127.0.0.1:{port}") and info.value.exit_code == 3
        assert isinstance(info.value, ServingError)
        assert info.value.kind == UNAVAILABLE and info.value.status is None  # nothing answered
    with pytest.raises(ServerUnreachableError, match="no server at 127.0.0.1"):
        VideoEndpointClient(f"127.0.0.1:{port}", timeout=20).predict_frames(np.zeros((8, 32, 32, 3), np.uint8))
    # an unknown host is "no server" too, with its own cause
    for protocol in ("grpc", "http"):
        with make_client(protocol, "nohost.invalid", conf, timeout=20) as client:
            with pytest.raises(ServerUnreachableError) as info:
                client.predict({"data_batch_0": clip})
        assert str(info.value) == no_server("nohost.invalid:9393", "host name not found")


@pytest.mark.slow
def test_a_refusal_carries_its_kind_and_the_protocols_own_status(server_fp32, bundle_fp32):
    """A caller branches on ``exc.kind`` whatever the protocol; ``exc.status`` is what that protocol said."""
    from vslim.serving.client import ClientConfig, make_client

    conf = ClientConfig.load(bundle_fp32.client)
    wrong = np.zeros((1, 3, 3, 8, 8), np.float32)  # not the model's clip shape
    expected_status = {"grpc": "INVALID_ARGUMENT", "http": 400, "http-proto": 400, "v2-http": 400}
    expected_status["v2-grpc"] = "INVALID_ARGUMENT"
    for protocol, status in expected_status.items():
        with make_client(protocol, server_fp32.address, conf, timeout=30) as client:
            with pytest.raises(ClientError) as info:
                client.predict({"data_batch_0": wrong})
        assert info.value.kind == INVALID and info.value.status == status, (protocol, info.value)
        assert "shape" in str(info.value)
    for protocol, status in (("v2-http", 404), ("v2-grpc", "NOT_FOUND")):
        with make_client(protocol, server_fp32.address, conf, timeout=30, model="no_such_model") as client:
            with pytest.raises(ClientError) as info:
                client.predict({"data_batch_0": np.zeros((1, *conf.signature.feeds[0].shape), np.float32)})
        assert info.value.kind == NOT_FOUND and info.value.status == status, (protocol, info.value)
    with make_client("grpc", server_fp32.address, conf, timeout=30) as client:  # the server kept serving
        assert client.predict({"data_batch_0": np.zeros((1, *conf.signature.feeds[0].shape), np.float32)})


# --------------------------------------------------------------------------- the port-less address, for real


def _port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.mark.slow
def test_a_portless_address_reaches_a_server_on_9393(cli, bundle_fp32, synth_data, cpp_client, tmp_path):
    """Only where 9393 is free here (never disturbs a server someone runs); the tests above cover the rest."""
    from vslim.data import ClipPipeline
    from vslim.serving.client import ClientConfig

    if not _port_is_free(DEFAULT_PORT):
        pytest.skip("port 9393 is in use on this machine")
    try:
        server = ServerProcess(bundle_fp32.server, "--port", DEFAULT_PORT)
    except ServingError as exc:  # taken between the check and the start
        pytest.skip(f"could not serve on 9393: {exc}")
    with server:
        assert server.port == DEFAULT_PORT
        video = synth_data / "demo.mp4"
        for protocol, address in (
            ("grpc", "127.0.0.1"),
            ("http", "localhost"),
            ("http-proto", "http://127.0.0.1"),
            ("v2-http", "127.0.0.1"),
            ("v2-grpc", "localhost"),
            ("video", "127.0.0.1"),
            ("video-file", "127.0.0.1"),
        ):
            r = cli(
                "client",
                "--bundle",
                bundle_fp32.root,
                "--video",
                video,
                "--address",
                address,
                "--protocol",
                protocol,
                "--json",
            )
            assert r.code == 0, (protocol, r.err)
            answer = json.loads(r.out)
            assert answer["address"] == f"{address.removeprefix('http://')}:9393"
            assert len(answer["predictions"][0]["classes"]) == 1
        clip = tmp_path / "clip.npy"
        np.save(clip, ClipPipeline(ClientConfig.load(bundle_fp32.client).meta.preprocess).from_video(video))
        import subprocess

        for flags in (["--address", "127.0.0.1"], ["--host", "localhost"], []):
            r = subprocess.run(
                [str(cpp_client), *flags, "--bundle", str(bundle_fp32.root), "--input", str(clip), "--json"],
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert r.returncode == 0, (flags, r.stderr)
            assert len(json.loads(r.stdout)["samples"][0]["classes"]) == 1


# --------------------------------------------------------------------------- one answer, every protocol


def _client_json(cli, *args) -> dict:
    r = cli("client", *map(str, args), "--json")
    assert r.code == 0, r.err
    return json.loads(r.out)


@pytest.mark.slow
@pytest.mark.parametrize("protocol", PROTOCOLS[1:])
def test_every_protocol_prints_the_grpc_answer_in_one_shape(cli, server_int8, bundle_int8, val_clips, protocol):
    """--protocol video included: it honours --top-k and prints what grpc prints, not the pipeline's dict."""
    video = val_clips[2][1]
    base = ("--bundle", bundle_int8.client, "--video", video, "--address", server_int8.address, "--top-k", 3)
    ref = _client_json(cli, *base)
    got = _client_json(cli, *base, "--protocol", protocol)
    assert set(ref) == set(got) == {"address", "protocol", "predictions"}
    assert got["address"] == server_int8.address and got["protocol"] == protocol and ref["protocol"] == "grpc"
    (want,), (entry,) = ref["predictions"], got["predictions"]
    assert set(entry) - {"sampling"} == ENTRY_KEYS == set(want) - {"sampling"}
    assert entry["source"] == str(video) and len(entry["classes"]) == 3
    assert entry["classes"] == want["classes"] and entry["labels"] == want["labels"]
    np.testing.assert_allclose(entry["scores"], want["scores"], atol=1e-4)


@pytest.mark.slow
def test_video_protocol_prints_paddlevideos_lines_like_predict(cli, server_int8, bundle_int8, val_clips):
    from vslim.predict import format_paddlevideo
    from vslim.topk import TopK

    video = val_clips[2][0]
    base = (
        "client",
        "--bundle",
        bundle_int8.client,
        "--video",
        video,
        "--address",
        server_int8.address,
        "--protocol",
        "video",
        "--top-k",
        2,
    )
    text = cli(*base)
    assert text.code == 0, text.err
    (entry,) = json.loads(cli(*base, "--json").out)["predictions"]
    lines = format_paddlevideo(TopK(entry["classes"], entry["scores"], entry["labels"], source=entry["source"]))
    assert text.out.splitlines()[:7] == lines.splitlines() and len(lines.splitlines()) == 7
    assert lines.splitlines()[0] == f"Current video file: {video}"
    # vslim predict --json on the same model: the same entry
    predicted = cli("predict", "--model-dir", bundle_int8.server, "--input-file", video, "--top-k", 2, "--json")
    assert predicted.code == 0, predicted.err
    (mine,) = json.loads(predicted.out)["predictions"]
    assert set(mine) - {"sampling"} == ENTRY_KEYS
    assert mine["classes"] == entry["classes"] and mine["labels"] == entry["labels"]


@pytest.mark.slow
def test_flag_aliases_and_bundle_forms_give_the_same_answer(cli, server_fp32, bundle_fp32, val_clips):
    video = val_clips[2][0]
    address = ("--address", server_fp32.address)
    ref = _client_json(cli, "--bundle", bundle_fp32.client, "--video", video, *address)
    assert len(ref["predictions"][0]["classes"]) == 1  # --top-k defaults to 1
    for form in (
        ("--client-conf", bundle_fp32.client, "--input-file", video),
        ("--bundle", bundle_fp32.root, "--video", video),
        ("--bundle", bundle_fp32.server, "--video", video),
        ("--bundle", bundle_fp32.client / "serving_client_conf.prototxt", "--video", video),
    ):
        assert _client_json(cli, *form, *address)["predictions"] == ref["predictions"], form
    r = cli("client", "--bundle", bundle_fp32.root.parent, "--video", video, *address)
    assert r.code == 2 and "serving_client_conf.prototxt" in r.err, r.err


@pytest.mark.slow
@pytest.mark.parametrize(
    "protocol, extra", [("grpc", ()), ("video", ()), ("video-file", ()), ("v2-grpc", ("--server-decode",))]
)
def test_a_too_short_video_says_its_frames_were_repeated(cli, server_int8, bundle_int8, tmp_path, protocol, extra):
    """The sampling record comes through whoever sampled the clip: this client or the server."""
    import cv2

    short = tmp_path / "short.mp4"
    writer = cv2.VideoWriter(str(short), cv2.VideoWriter_fourcc(*"mp4v"), 10, (96, 72))
    for frame in np.random.default_rng(0).integers(0, 256, (3, 72, 96, 3), dtype=np.uint8):
        writer.write(frame)
    writer.release()
    base = (
        "--bundle",
        bundle_int8.client,
        "--video",
        short,
        "--address",
        server_int8.address,
        "--protocol",
        protocol,
        *extra,
    )
    (entry,) = _client_json(cli, *base)["predictions"]
    sampling = entry["sampling"]
    assert sampling["repeated"] is True and sampling["video_frames"] == 3 and sampling["clip_frames"] > 3
    assert "repeated" in sampling["note"]
    text = cli("client", *map(str, base))
    assert text.code == 0, text.err
    assert text.out.splitlines()[-1].strip() == f"note: {sampling['note']}"


@pytest.mark.slow
def test_a_server_that_answers_wrongly_is_not_called_absent(cli, bundle_int8, synth_data, tls_files):
    """Plaintext against a TLS port reaches a server: the error is the protocol's, exit 2, not "no server"."""
    cert, key = tls_files
    with ServerProcess(bundle_int8.server, "--tls-cert", cert, "--tls-key", key) as server:
        for protocol in ("grpc", "http-proto", "v2-grpc", "video-file"):
            r = cli(
                "client",
                "--bundle",
                bundle_int8.client,
                "--video",
                synth_data / "demo.mp4",
                "--address",
                server.address,
                "--protocol",
                protocol,
                "--timeout",
                20,
            )
            assert r.code == 2 and "no server at" not in r.err, (protocol, r.err)
        r = cli(
            "client",
            "--bundle",
            bundle_int8.client,
            "--video",
            synth_data / "demo.mp4",
            "--address",
            server.address,
            "--tls-ca",
            cert,
            "--json",
        )
        assert r.code == 0, r.err
