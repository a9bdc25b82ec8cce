"""The Open Inference Protocol (KServe v2) on real servers: Triton's own client, raw requests, mixed batches, bad input."""

import copy
import json
import re
import struct
import subprocess
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from conftest import REPO, run_script
from servers import ServerProcess

from vslim.data.decode import VideoReader
from vslim.serving.client import ClientConfig, GrpcClient, VideoEndpointClient
from vslim.serving.errors import ServingError
from vslim.serving.protocols.v2.client import V2GrpcClient, V2HttpClient

pytestmark = [pytest.mark.slow, pytest.mark.server]


def http(method, url, body=None, headers=None):
    """A raw HTTP request (stdlib only): (status, headers, body)."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def paddle_logits(server, bundle, clips) -> np.ndarray:
    """What Paddle Serving's protocol answers for the same input (the reference every v2 answer must equal)."""
    with GrpcClient(server.address, ClientConfig.load(bundle.client)) as c:
        return c.predict({"data_batch_0": clips})["outputs"]


# --------------------------------------------------------------------------- Triton's client, unmodified


@pytest.mark.parametrize("server_name, bundle_name", [("server_fp32", "bundle_fp32"), ("server_int8", "bundle_int8")])
def test_tritonclient_drives_vslim_unmodified(request, server_name, bundle_name, val_clips):
    import tritonclient.grpc as tgrpc
    import tritonclient.http as thttp
    from tritonclient.utils import InferenceServerException

    server, bundle = request.getfixturevalue(server_name), request.getfixturevalue(bundle_name)
    name = bundle.server.name.removesuffix("_serving_server")
    clips, _, paths = val_clips
    expected = paddle_logits(server, bundle, clips[:2])
    atol = 1e-5 * np.abs(expected).max()
    video = VideoEndpointClient(server.address)
    file_top = video.classify_file(paths[0], top_k=3)
    with VideoReader(paths[1]) as reader:
        frames = reader.read(range(reader.num_frames))
    frames_label = eval(video.predict_frames(frames)["value"][0])[0]  # PaddleVideo's stringified list

    for mod in (thttp, tgrpc):
        client = mod.InferenceServerClient(server.address)
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready(name) and client.is_model_ready(f"{name}_video")
        meta = client.get_model_metadata(name)
        config = client.get_model_config(name)
        if mod is tgrpc:
            from google.protobuf.json_format import MessageToDict

            meta = MessageToDict(meta, preserving_proto_field_name=True)
            config = MessageToDict(config, preserving_proto_field_name=True)["config"]
            assert [int(d) for d in meta["inputs"][0]["shape"]] == [-1, 8, 3, 64, 64]
            assert [int(d) for d in config["input"][0]["dims"]] == [8, 3, 64, 64]
        else:
            assert meta["inputs"][0]["shape"] == [-1, 8, 3, 64, 64] and config["input"][0]["dims"] == [8, 3, 64, 64]
        assert meta["versions"] == ["1"] and meta["inputs"][0]["name"] == "data_batch_0"
        assert meta["inputs"][0]["datatype"] == "FP32" and meta["outputs"][0]["name"] == "outputs"
        assert config["input"][0]["data_type"] == "TYPE_FP32" and int(config["max_batch_size"]) == 64
        server_meta = client.get_server_metadata()
        extensions = server_meta["extensions"] if mod is thttp else list(server_meta.extensions)
        assert {"binary_tensor_data", "model_configuration", "statistics"} <= set(extensions)

        # tensors: binary and JSON over HTTP, raw contents over gRPC; answers equal Paddle Serving's
        for binary in (True, False) if mod is thttp else (True,):
            inp = mod.InferInput("data_batch_0", [2, 8, 3, 64, 64], "FP32")
            if mod is thttp:
                inp.set_data_from_numpy(clips[:2], binary_data=binary)
                outputs = [thttp.InferRequestedOutput("outputs", binary_data=binary)]
            else:
                inp.set_data_from_numpy(clips[:2])
                outputs = [tgrpc.InferRequestedOutput("outputs")]
            result = client.infer(name, [inp], outputs=outputs, request_id="req-1")
            np.testing.assert_allclose(result.as_numpy("outputs"), expected, atol=atol, err_msg=f"{mod} {binary}")
            response_id = result.get_response()["id"] if mod is thttp else result.get_response().id
            assert response_id == "req-1"

        # the video model: a whole file (BYTES), then decoded frames (UINT8); same classes as the video endpoints
        file_in = mod.InferInput("video", [1], "BYTES")
        file_in.set_data_from_numpy(np.array([paths[0].read_bytes()], dtype=object))
        result = client.infer(f"{name}_video", [file_in], parameters={"top_k": 3})
        assert result.as_numpy("class_id").tolist() == [file_top.classes]
        assert [x.decode() for x in result.as_numpy("label")[0]] == file_top.labels
        np.testing.assert_allclose(result.as_numpy("prob")[0], file_top.scores, atol=1e-5)
        frames_in = mod.InferInput("frames", list(frames.shape), "UINT8")
        frames_in.set_data_from_numpy(frames)
        result = client.infer(f"{name}_video", [frames_in], parameters={"top_k": 1})
        assert result.as_numpy("label")[0][0].decode() == frames_label and result.as_numpy("prob").shape == (1, 1)

        stats = client.get_inference_statistics(name)
        if mod is tgrpc:
            stats = MessageToDict(stats, preserving_proto_field_name=True)
        model_stats = stats["model_stats"][0]
        assert int(model_stats["inference_count"]) >= 2 and int(model_stats["execution_count"]) >= 1
        assert model_stats["version"] == "1"
        with pytest.raises(InferenceServerException, match="unknown model"):
            client.get_model_metadata("no_such_model")
        client.close()
    print(
        f"figure: tritonclient {thttp.__name__}/{tgrpc.__name__} on {name}: metadata, config, stats, "
        f"tensor infer (binary, JSON, raw) and video infer (file, frames) agree with Paddle Serving"
    )


# --------------------------------------------------------------------------- raw requests from the spec alone


def test_raw_http_requests_built_from_the_spec(server_int8, bundle_int8, val_clips):
    clips = val_clips[0][:1]
    expected = paddle_logits(server_int8, bundle_int8, clips)
    base = f"{server_int8.url}/v2"
    status, headers, body = http("GET", base)
    assert status == 200 and json.loads(body)["name"] == "vslim"
    # KServe's bodies (its SDK parses them); Triton's clients read the status alone
    for path, doc in (
        ("/health/live", {"live": True}),
        ("/health/ready", {"ready": True}),
        ("/models/small_int8/ready", {"name": "small_int8", "ready": True}),
        ("/models/small_int8/versions/1/ready", {"name": "small_int8", "ready": True}),
    ):
        status, _, body = http("GET", base + path)
        assert status == 200 and json.loads(body) == doc, path
    # JSON tensors, nested data, no Content-Type at all
    doc = {
        "id": "json-1",
        "inputs": [{"name": "data_batch_0", "shape": list(clips.shape), "datatype": "FP32", "data": clips.tolist()}],
    }
    status, headers, body = http("POST", f"{base}/models/small_int8/versions/1/infer", json.dumps(doc).encode())
    assert status == 200 and headers["content-type"] == "application/json", body[:300]
    answer = json.loads(body)
    assert answer["model_name"] == "small_int8" and answer["model_version"] == "1" and answer["id"] == "json-1"
    assert answer["outputs"][0]["name"] == "outputs" and answer["outputs"][0]["shape"] == [1, 10]
    np.testing.assert_allclose(answer["outputs"][0]["data"], expected[0], atol=1e-5 * np.abs(expected).max())
    # binary tensors: JSON header, then raw little-endian floats; ask for the output in binary
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "data_batch_0",
                    "shape": list(clips.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": clips.nbytes},
                }
            ],
            "outputs": [{"name": "outputs", "parameters": {"binary_data": True}}],
        }
    ).encode()
    status, headers, body = http(
        "POST",
        f"{base}/models/small_int8/infer",
        head + clips.astype("<f4").tobytes(),
        {"Inference-Header-Content-Length": str(len(head))},
    )
    assert status == 200 and headers["content-type"] == "application/octet-stream", body[:300]
    n = int(headers["inference-header-content-length"])
    out = json.loads(body[:n])["outputs"][0]
    assert out["parameters"]["binary_data_size"] == 40 and "data" not in out
    np.testing.assert_allclose(np.frombuffer(body[n:], "<f4"), expected[0], atol=1e-5 * np.abs(expected).max())
    # a whole video file as one BYTES element (4-byte little-endian length, then the bytes)
    video = val_clips[2][0].read_bytes()
    element = struct.pack("<I", len(video)) + video
    head = json.dumps(
        {
            "inputs": [
                {"name": "video", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": len(element)}}
            ],
            "parameters": {"top_k": 2},
        }
    ).encode()
    status, headers, body = http(
        "POST",
        f"{base}/models/small_int8_video/infer",
        head + element,
        {"Inference-Header-Content-Length": str(len(head))},
    )
    assert status == 200, body[:300]
    outputs = {o["name"]: o for o in json.loads(body)["outputs"]}
    assert outputs["label"]["datatype"] == "BYTES" and outputs["label"]["shape"] == [1, 2]
    top = VideoEndpointClient(server_int8.address).classify_file(val_clips[2][0], top_k=2)
    assert outputs["class_id"]["data"] == top.classes and outputs["label"]["data"] == top.labels


def test_raw_grpc_request_from_the_proto_alone(server_int8, bundle_int8, val_clips, tmp_path):
    """A fresh interpreter compiles serving/proto/grpc_service.proto and calls the server: no vslim code."""
    clips = val_clips[0][:1]
    expected = paddle_logits(server_int8, bundle_int8, clips)
    np.save(tmp_path / "clip.npy", clips)
    script = tmp_path / "raw_v2.py"
    script.write_text(f"""
import sys, json, numpy as np, grpc
from grpc_tools import protoc
out = {str(tmp_path)!r}
assert protoc.main(["protoc", "-I{REPO / "serving" / "proto"}", "--python_out=" + out, "--grpc_python_out=" + out,
                    "grpc_service.proto"]) == 0
sys.path.insert(0, out)
import grpc_service_pb2 as pb, grpc_service_pb2_grpc as pbg
clip = np.load(out + "/clip.npy")
stub = pbg.GRPCInferenceServiceStub(grpc.insecure_channel("{server_int8.address}"))
live = stub.ServerLive(pb.ServerLiveRequest(), timeout=30).live
meta = stub.ModelMetadata(pb.ModelMetadataRequest(name="small_int8"), timeout=30)
raw = pb.ModelInferRequest(model_name="small_int8", id="raw")
raw.inputs.add(name="data_batch_0", datatype="FP32", shape=list(clip.shape))
raw.raw_input_contents.append(clip.astype("<f4").tobytes())
typed = pb.ModelInferRequest(model_name="small_int8", model_version="1")
typed.inputs.add(name="data_batch_0", datatype="FP32", shape=list(clip.shape)).contents.fp32_contents.extend(
    clip.reshape(-1).tolist())
typed.outputs.add(name="outputs")
answers = []
for req in (raw, typed):
    resp = stub.ModelInfer(req, timeout=60)
    answers.append({{"id": resp.id, "name": resp.outputs[0].name, "shape": list(resp.outputs[0].shape),
                    "values": np.frombuffer(resp.raw_output_contents[0], "<f4").tolist()}})
print(json.dumps({{"live": live, "input": meta.inputs[0].name, "answers": answers}}))
""")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout)
    assert got["live"] and got["input"] == "data_batch_0"
    for answer in got["answers"]:
        assert answer["name"] == "outputs" and answer["shape"] == [1, 10]
        np.testing.assert_allclose(answer["values"], expected[0], atol=1e-5 * np.abs(expected).max())
    assert got["answers"][0]["id"] == "raw"


# --------------------------------------------------------------------------- one engine, one batcher


def test_mixed_protocol_requests_share_batches(bundle_fp32, val_clips):
    clips = val_clips[0]
    rng = np.random.default_rng(1)
    inputs = [clips[i % len(clips)] + 0.05 * rng.standard_normal(clips[0].shape).astype(np.float32) for i in range(32)]
    server = ServerProcess(bundle_fp32.server, "--max-batch-size", 8, "--batch-timeout-ms", 50, "--workers", 1)
    try:
        expected = paddle_logits(server, bundle_fp32, np.stack(inputs))
        conf = ClientConfig.load(bundle_fp32.client)
        clients = [
            V2GrpcClient(server.address, conf),
            V2HttpClient(server.address, conf),
            GrpcClient(server.address, conf),
        ]

        def one(i):
            return clients[i % 3].predict({"data_batch_0": inputs[i][None]})["outputs"][0]

        with ThreadPoolExecutor(32) as pool:
            results = list(pool.map(one, range(32)))
        for c in clients:
            c.close()
        for i, got in enumerate(results):
            np.testing.assert_allclose(got, expected[i], atol=1e-4 * np.abs(expected).max(), err_msg=f"request {i}")
        with urllib.request.urlopen(f"{server.url}/metrics") as r:
            text = r.read().decode()
        mixed = {
            m.group(1): float(m.group(2))
            for m in re.finditer(r'vslim_batches_total\{model="small",protocols="([^"]+)"\} (\S+)', text)
        }
        assert sum(v for k, v in mixed.items() if "+" in k) >= 1, text
        for label in ("v2-grpc", "v2-http", "grpc"):
            assert (
                f'vslim_requests_total{{endpoint="{"infer" if "v2" in label else "inference"}",model="small",'
                f'outcome="ok",protocol="{label}"}}' in text
            )
        print(f"figure: 32 mixed requests -> inference runs by protocols {mixed}")
    finally:
        assert server.stop() == 0, server.log()


# --------------------------------------------------------------------------- bad input


def _good_v2(clip) -> bytes:
    return json.dumps(
        {
            "inputs": [
                {
                    "name": "data_batch_0",
                    "shape": [1, *clip.shape],
                    "datatype": "FP32",
                    "data": clip.reshape(-1).tolist(),
                }
            ]
        }
    ).encode()


def _binary(inputs, *chunks, header_length=None):
    head = json.dumps({"inputs": inputs}).encode()
    return head + b"".join(chunks), {"Inference-Header-Content-Length": str(header_length or len(head))}


def test_bad_v2_http_requests_get_the_protocol_error_and_the_server_keeps_serving(server_fp32, val_clips):
    clip = val_clips[0][0]
    good = _good_v2(clip)
    feed = {"name": "data_batch_0", "shape": [1, *clip.shape], "datatype": "FP32"}
    raw = clip.astype("<f4").tobytes()
    m = "/v2/models/small"
    cases = [
        ("unknown model", "/v2/models/nope/infer", good, {}, 404, "unknown model: 'nope'"),
        ("unknown version", f"{m}/versions/7/infer", good, {}, 404, "version 7 is not found"),
        ("unknown model metadata", "/v2/models/nope", None, {}, 404, "unknown model"),
        ("unknown model config", "/v2/models/nope/config", None, {}, 404, "unknown model"),
        ("unknown model ready", "/v2/models/nope/ready", None, {}, 404, "unknown model"),
        (
            "wrong datatype",
            f"{m}/infer",
            json.dumps({"inputs": [{**feed, "datatype": "INT64", "data": [1] * clip.size}]}).encode(),
            {},
            400,
            "must be FP32, got INT64",
        ),
        (
            "unknown datatype",
            f"{m}/infer",
            json.dumps({"inputs": [{**feed, "datatype": "FLOAT32", "data": [1]}]}).encode(),
            {},
            400,
            "'FLOAT32' is not a v2 datatype",
        ),
        (
            "wrong shape",
            f"{m}/infer",
            json.dumps({"inputs": [{**feed, "shape": [1, 8, 3, 64, 32], "data": [0.0] * (clip.size // 2)}]}).encode(),
            {},
            400,
            "but the model expects",
        ),
        (
            "wrong count",
            f"{m}/infer",
            json.dumps({"inputs": [{**feed, "data": [0.0] * 7}]}).encode(),
            {},
            400,
            "has 7 values but shape",
        ),
        (
            "unknown input",
            f"{m}/infer",
            json.dumps({"inputs": [{**feed, "name": "pixels", "data": [0.0]}]}).encode(),
            {},
            400,
            "unknown input 'pixels'",
        ),
        (
            "unknown output",
            f"{m}/infer",
            json.dumps(
                {"inputs": [{**feed, "data": clip.reshape(-1).tolist()}], "outputs": [{"name": "logits"}]}
            ).encode(),
            {},
            400,
            "unknown output 'logits'",
        ),
        (
            "binary size not matching the shape",
            f"{m}/infer",
            *_binary([{**feed, "parameters": {"binary_data_size": len(raw) - 4}}], raw[:-4]),
            400,
            "needs",
        ),
        (
            "binary size past the body",
            f"{m}/infer",
            *_binary([{**feed, "parameters": {"binary_data_size": len(raw)}}], raw[:-100]),
            400,
            "runs past the body",
        ),
        (
            "header length beyond the body",
            f"{m}/infer",
            *_binary([feed], b"", header_length=10**6),
            400,
            "Inference-Header-Content-Length",
        ),
        (
            "bytes nobody claims",
            f"{m}/infer",
            *_binary([{**feed, "parameters": {"binary_data_size": len(raw)}}], raw, b"\0" * 8),
            400,
            "belong to no input",
        ),
        (
            "broken BYTES length prefix",
            f"{m}_video/infer",
            *_binary(
                [{"name": "video", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 8}}],
                struct.pack("<I", 1000) + b"abcd",
            ),
            400,
            "claims 1000 bytes",
        ),
        (
            "not a video",
            f"{m}_video/infer",
            json.dumps(
                {"inputs": [{"name": "video", "shape": [1], "datatype": "BYTES", "data": ["hello, not a video"]}]}
            ).encode(),
            {},
            400,
            "cannot be decoded",
        ),
        (
            "frames of the wrong shape",
            f"{m}_video/infer",
            json.dumps(
                {"inputs": [{"name": "frames", "shape": [2, 4, 4], "datatype": "UINT8", "data": [0] * 32}]}
            ).encode(),
            {},
            400,
            "send \\[T, H, W, 3\\]",
        ),
        (
            "bad top_k",
            f"{m}_video/infer",
            json.dumps(
                {
                    "inputs": [{"name": "frames", "shape": [1, 4, 4, 3], "datatype": "UINT8", "data": [0] * 48}],
                    "parameters": {"top_k": 0},
                }
            ).encode(),
            {},
            400,
            "top_k must be a whole number",
        ),
        ("malformed JSON", f"{m}/infer", b'{"inputs": [', {}, 400, "malformed JSON"),
        ("no inputs", f"{m}/infer", b'{"inputs": []}', {}, 400, "non-empty list"),
        ("over the size limit", f"{m}/infer", b"[" + b"0," * (9 << 20) + b"0]", {}, 413, "exceeds the 16 MiB"),
        (
            "too many clips",
            f"{m}/infer",
            json.dumps({"inputs": [{**feed, "shape": [1000, 8, 3, 64, 64], "data": [0.0]}]}).encode(),
            {},
            413,
            "over this server's limit",
        ),
    ]
    for name, path, body, headers, status, message in cases:
        got, hdrs, answer = http("POST" if body is not None else "GET", server_fp32.url + path, body, headers)
        assert got == status, (name, got, answer[:300])
        assert hdrs["content-type"] == "application/json", name
        assert re.search(message, json.loads(answer)["error"]), (name, answer[:300])
        ok, _, good_answer = http("POST", f"{server_fp32.url}{m}/infer", good)
        assert ok == 200 and json.loads(good_answer)["outputs"][0]["shape"] == [1, 10], name


def test_bad_v2_grpc_requests_get_the_protocol_error(server_fp32, val_clips):
    import grpc

    from vslim.serving.protocols.v2.proto import SERVICE_NAME, pb

    clip = val_clips[0][:1]
    channel = grpc.insecure_channel(server_fp32.address)
    infer = channel.unary_unary(
        f"/{SERVICE_NAME}/ModelInfer",
        request_serializer=lambda b: b,
        response_deserializer=pb.ModelInferResponse.FromString,
    )

    def request(
        model="small",
        datatype="FP32",
        shape=tuple(clip.shape),
        raw=clip.astype("<f4").tobytes(),  # noqa: B008 (one clip for every call, as meant)
        name="data_batch_0",
        version="",
    ):
        msg = pb.ModelInferRequest(model_name=model, model_version=version)
        msg.inputs.add(name=name, datatype=datatype, shape=list(shape))
        msg.raw_input_contents.append(raw)
        return msg.SerializeToString()

    video = pb.ModelInferRequest(model_name="small_video")
    video.inputs.add(name="video", datatype="BYTES", shape=[1])
    broken = copy.deepcopy(video)
    video.raw_input_contents.append(struct.pack("<I", 5) + b"notav")
    broken.raw_input_contents.append(struct.pack("<I", 50) + b"notav")
    cases = [
        (request(model="nope"), grpc.StatusCode.NOT_FOUND, "unknown model: 'nope'"),
        (request(version="3"), grpc.StatusCode.NOT_FOUND, "version 3 is not found"),
        (
            request(datatype="FP64", raw=clip.astype("<f8").tobytes()),
            grpc.StatusCode.INVALID_ARGUMENT,
            "must be FP32, got FP64",
        ),
        (
            request(shape=(1, 8, 3, 64, 16), raw=clip.astype("<f4").tobytes()[: clip.nbytes // 4]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "the model expects",
        ),
        (request(raw=clip.astype("<f4").tobytes()[:-8]), grpc.StatusCode.INVALID_ARGUMENT, "bytes of FP32 data"),
        (request(shape=(100, 8, 3, 64, 64), raw=b""), grpc.StatusCode.INVALID_ARGUMENT, "bytes of FP32 data"),
        (request(name="pixels"), grpc.StatusCode.INVALID_ARGUMENT, "unknown input 'pixels'"),
        (broken.SerializeToString(), grpc.StatusCode.INVALID_ARGUMENT, "claims 50 bytes"),
        (video.SerializeToString(), grpc.StatusCode.INVALID_ARGUMENT, "cannot be decoded"),
        (b"\xff\xff\xff garbage", grpc.StatusCode.INVALID_ARGUMENT, "malformed ModelInferRequest"),
    ]
    for body, code, message in cases:
        with pytest.raises(grpc.RpcError) as info:
            infer(body, timeout=60)
        assert info.value.code() == code and re.search(message, info.value.details()), info.value.details()
        assert infer(request(), timeout=60).outputs[0].name == "outputs"
    ready = channel.unary_unary(
        f"/{SERVICE_NAME}/ModelReady",
        request_serializer=pb.ModelReadyRequest.SerializeToString,
        response_deserializer=pb.ModelReadyResponse.FromString,
    )
    with pytest.raises(grpc.RpcError) as info:  # as Triton: an unknown model is an error, not "not ready"
        ready(pb.ModelReadyRequest(name="nope"), timeout=30)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    channel.close()


# --------------------------------------------------------------------------- security, clients


def test_v2_health_is_open_metadata_and_inference_need_the_token(bundle_fp32, val_clips, tls_files, token_file):
    import grpc
    import requests

    from vslim.serving.protocols.v2.proto import SERVICE_NAME, pb

    cert, key = tls_files
    token = token_file.read_text().strip()
    conf = ClientConfig.load(bundle_fp32.client)
    clip = val_clips[0][:1]
    with ServerProcess(
        bundle_fp32.server, "--tls-cert", cert, "--tls-key", key, "--auth-token-file", token_file
    ) as server:
        base = f"https://{server.address}/v2"
        for path in ("/health/live", "/health/ready", "/models/small/ready", "/models/small_video/versions/1/ready"):
            assert requests.get(base + path, verify=str(cert), timeout=30).status_code == 200, path
        for path in ("", "/models/small", "/models/small/config", "/models/small/stats", "/models/stats"):
            r = requests.get(base + path, verify=str(cert), timeout=30)
            assert r.status_code == 401 and "bearer token" in r.json()["error"], path
        r = requests.post(
            f"{base}/models/small/infer",
            data=_good_v2(clip[0]),
            verify=str(cert),
            timeout=30,
            headers={"Authorization": "Bearer wrong-token-wrong-token"},
        )
        assert r.status_code == 401
        for path in ("/repository/index", "/repository/models/small/load", "/repository/models/small/unload"):
            r = requests.post(base + path, verify=str(cert), timeout=30)  # model control needs the token too
            assert r.status_code == 401, path
        channel = grpc.secure_channel(server.address, grpc.ssl_channel_credentials(cert.read_bytes()))
        live = channel.unary_unary(
            f"/{SERVICE_NAME}/ServerLive", pb.ServerLiveRequest.SerializeToString, pb.ServerLiveResponse.FromString
        )
        meta = channel.unary_unary(
            f"/{SERVICE_NAME}/ModelMetadata",
            pb.ModelMetadataRequest.SerializeToString,
            pb.ModelMetadataResponse.FromString,
        )
        assert live(pb.ServerLiveRequest(), timeout=30).live
        with pytest.raises(grpc.RpcError) as info:
            meta(pb.ModelMetadataRequest(name="small"), timeout=30)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        channel.close()
        for cls in (V2HttpClient, V2GrpcClient):
            with cls(server.address, conf, token=token, tls_ca=str(cert)) as c:
                assert c.predict({"data_batch_0": clip})["outputs"].shape == (1, 10)
                assert c.model_metadata()["name"] == "small" and c.server_ready()
            with pytest.raises(ServingError, match="401|UNAUTHENTICATED"):
                with cls(server.address, conf, token="wrong-token-wrong-token", tls_ca=str(cert)) as c:
                    c.predict({"data_batch_0": clip})
        text = requests.get(
            f"https://{server.address}/metrics",
            verify=str(cert),
            timeout=30,
            headers={"Authorization": f"Bearer {token}"},
        ).text
        assert 'vslim_request_errors_total{kind="unauthenticated",model="",protocol="v2-http"}' in text
        assert 'vslim_request_errors_total{kind="unauthenticated",model="",protocol="v2-grpc"}' in text


@pytest.mark.parametrize(
    "extra",
    [
        ["--protocol", "v2-http"],
        ["--protocol", "v2-grpc"],
        ["--protocol", "v2-http", "--json-tensors"],
        ["--protocol", "v2-grpc", "--server-decode"],
    ],
)
def test_vslim_client_speaks_v2(server_int8, bundle_int8, val_clips, extra):
    video = val_clips[2][2]
    args = ("--bundle", bundle_int8.client, "--video", video, "--address", server_int8.address, "--top-k", 3, "--json")
    reference = run_script("vslim-client", *args)
    got = run_script("vslim-client", *args, *extra)
    assert reference.code == 0 and got.code == 0, got.err
    (ref,), (answer,) = json.loads(reference.out)["predictions"], json.loads(got.out)["predictions"]
    assert answer["classes"] == ref["classes"] and answer["labels"] == ref["labels"]
    np.testing.assert_allclose(answer["scores"], ref["scores"], atol=1e-5)


# --------------------------------------------------------------------------- system shared memory


def test_system_shared_memory_with_tritonclient_and_vslims_own_client(bundle_fp32, server_fp32, val_clips):
    """Triton's system shared memory extension (--allow-client-shm): tritonclient's HTTP and gRPC clients put the
    input in a region and read the output from one, vslim's v2-grpc-shm client hands its input over the same way;
    every answer equals the one sent in the request. Registrations that would reach outside /dev/shm, past an
    object, or twice are refused, and so is all of it on a server started without the flag."""
    import tritonclient.grpc as tgrpc
    import tritonclient.http as thttp
    import tritonclient.utils.shared_memory as tshm
    from tritonclient.utils import InferenceServerException

    from vslim.serving.client import make_client
    from vslim.serving.errors import ClientError

    clip = np.ascontiguousarray(val_clips[0][:2], dtype=np.float32)
    conf = ClientConfig.load(bundle_fp32.client)
    with ServerProcess(bundle_fp32.server, "--allow-client-shm") as server:
        with V2GrpcClient(server.address, conf) as c:
            expected = c.predict({"data_batch_0": clip})["outputs"]
        assert "system_shared_memory" in json.loads(http("GET", f"{server.url}/v2")[2])["extensions"]
        handles = []
        try:
            for module, address in ((thttp, server.address), (tgrpc, server.address)):
                kind = module.__name__.rsplit(".", 1)[1]
                client = module.InferenceServerClient(address)
                in_key, out_key = f"/vslim-test-in-{kind}", f"/vslim-test-out-{kind}"
                inp = tshm.create_shared_memory_region(f"in-{kind}", in_key, clip.nbytes)
                out = tshm.create_shared_memory_region(f"out-{kind}", out_key, expected.nbytes)
                handles += [inp, out]
                tshm.set_shared_memory_region(inp, [clip])
                client.register_system_shared_memory(f"in-{kind}", in_key, clip.nbytes)
                client.register_system_shared_memory(f"out-{kind}", out_key, expected.nbytes)
                status = client.get_system_shared_memory_status()
                assert f"in-{kind}" in (json.dumps(status) if isinstance(status, list) else str(status)), status
                x = module.InferInput("data_batch_0", list(clip.shape), "FP32")
                x.set_shared_memory(f"in-{kind}", clip.nbytes)
                y = module.InferRequestedOutput("outputs")
                y.set_shared_memory(f"out-{kind}", expected.nbytes)
                result = client.infer("small", [x], outputs=[y])
                meta = result.get_output("outputs")
                shape = meta["shape"] if isinstance(meta, dict) else list(meta.shape)
                got = tshm.get_contents_as_numpy(out, np.float32, [int(d) for d in shape])
                np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6, err_msg=kind)
                with pytest.raises(InferenceServerException, match="no shared memory region named 'gone'"):
                    x.set_shared_memory("gone", clip.nbytes)
                    client.infer("small", [x])
                client.unregister_system_shared_memory()
                client.close()
        finally:
            for handle in handles:
                tshm.destroy_shared_memory_region(handle)
        # vslim's own client: same answer, its region gone with it
        with make_client("v2-grpc-shm", server.address, conf) as c:
            np.testing.assert_allclose(c.predict({"data_batch_0": clip})["outputs"], expected, rtol=1e-5, atol=1e-6)
            key = c._key
            assert json.loads(http("GET", f"{server.url}/v2/systemsharedmemory/status")[2])[0]["key"] == key
        assert json.loads(http("GET", f"{server.url}/v2/systemsharedmemory/status")[2]) == []
        assert not (tshm.os.path.exists(f"/dev/shm{key}"))
        # refusals, each with the reason; the server keeps serving
        object_key = "/vslim-test-refusals"
        handle = tshm.create_shared_memory_region("r", object_key, 64)
        try:

            def register(name, body):
                status, _, text = http(
                    "POST", f"{server.url}/v2/systemsharedmemory/region/{name}/register", json.dumps(body).encode()
                )
                return status, json.loads(text).get("error", "")

            assert register("a", {"key": "/../../etc/passwd", "byte_size": 8})[1].startswith("shared memory key")
            assert register("a", {"key": "/no-such-object", "byte_size": 8})[0] == 404
            status, message = register("a", {"key": object_key, "offset": 32, "byte_size": 64})
            assert status == 400 and "run past the end" in message
            assert register("a", {"key": object_key, "byte_size": 64}) == (200, "")
            status, message = register("a", {"key": object_key, "byte_size": 8})
            assert status == 400 and "already registered" in message
            body = {
                "inputs": [
                    {
                        "name": "data_batch_0",
                        "shape": list(clip.shape),
                        "datatype": "FP32",
                        "parameters": {"shared_memory_region": "a", "shared_memory_byte_size": 64},
                    }
                ]
            }
            status, _, text = http("POST", f"{server.url}/v2/models/small/infer", json.dumps(body).encode())
            assert status == 400 and "needs" in json.loads(text)["error"], text
        finally:
            tshm.destroy_shared_memory_region(handle)
        with V2GrpcClient(server.address, conf) as c:
            np.testing.assert_allclose(c.predict({"data_batch_0": clip})["outputs"], expected, rtol=1e-6)
    # without --allow-client-shm: refused on both transports, with the flag to use
    status, _, text = http(
        "POST",
        f"{server_fp32.url}/v2/systemsharedmemory/region/a/register",
        json.dumps({"key": "/x", "byte_size": 8}).encode(),
    )
    assert status == 415 and "--allow-client-shm" in json.loads(text)["error"]
    assert "system_shared_memory" not in json.loads(http("GET", f"{server_fp32.url}/v2")[2])["extensions"]
    with pytest.raises(ClientError, match="--allow-client-shm") as info:
        with make_client("v2-grpc-shm", server_fp32.address, conf) as c:
            c.predict({"data_batch_0": clip})
    assert info.value.status == "INVALID_ARGUMENT"
    assert not [p for p in tshm.os.listdir("/dev/shm") if p.startswith("vslim-client-")]
