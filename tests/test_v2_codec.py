"""The v2 wire formats on their own: datatypes, BYTES, the binary tensor extension, gRPC messages, refusals."""

import json
import struct

import numpy as np
import pytest

from vslim.serving.errors import RequestError
from vslim.serving.protocols.v2 import datatypes, rest
from vslim.serving.protocols.v2.grpc import parse_infer_request, request_from_proto, response_to_proto
from vslim.serving.protocols.v2.messages import InferOutput, InferResponse, RequestedOutput
from vslim.serving.protocols.v2.proto import RAW_INPUT_CONTENTS, parameter_value, pb, set_parameter
from vslim.serving.protowire import append_len_fields


def binary_body(header: dict, *chunks: bytes) -> tuple[bytes, str]:
    head = json.dumps(header).encode()
    return head + b"".join(chunks), str(len(head))


@pytest.mark.parametrize("datatype", [d for d in datatypes.DATATYPES if d != "BYTES"])
def test_every_numeric_datatype_round_trips_raw_and_json(datatype):
    dtype = datatypes.DTYPES[datatype]
    values = (np.arange(6) % 2).astype(dtype) if datatype == "BOOL" else np.arange(6).astype(dtype)
    raw = datatypes.to_raw(values)
    assert len(raw) == 6 * dtype.itemsize and datatypes.datatype_of(values.dtype) == datatype
    np.testing.assert_array_equal(datatypes.from_raw(raw, datatype, [2, 3], "x"), values)
    if datatype != "FP16":
        np.testing.assert_array_equal(datatypes.from_json(values.reshape(2, 3).tolist(), datatype, "x"), values)
    with pytest.raises(RequestError, match="needs"):
        datatypes.from_raw(raw[:-1], datatype, [2, 3], "x")


def test_bytes_elements_are_length_prefixed_and_a_broken_prefix_is_refused():
    elements = [b"", b"a", "\u00e9t\u00e9".encode(), bytes(range(256))]
    raw = datatypes.serialize_bytes(elements)
    assert raw[:4] == struct.pack("<I", 0) and list(datatypes.deserialize_bytes(raw, "x")) == elements
    with pytest.raises(RequestError, match="claims 256 bytes but only 255 remain"):
        datatypes.deserialize_bytes(raw[:-1], "x")
    with pytest.raises(RequestError, match="inside a 4-byte length prefix"):
        datatypes.deserialize_bytes(raw + b"\x01\x00", "x")


@pytest.mark.parametrize(
    "data, datatype, message",
    [
        ([1.5, 2], "INT64", "must hold INT64"),
        ([300], "UINT8", "do not fit UINT8"),
        ([-1], "UINT32", "do not fit UINT32"),
        ([[1, 2], [3]], "FP32", "regular"),
        ([True], "FP32", "must hold FP32"),
        ([1.0], "FP16", "FP16 data cannot travel as JSON"),
        ([1, "a"], "BYTES", "must be strings"),
        ("abc", "FP32", "must be a list"),
    ],
)
def test_json_data_that_does_not_fit_its_datatype_is_refused(data, datatype, message):
    with pytest.raises(RequestError, match=message):
        datatypes.from_json(data, datatype, "input 'x'")


def test_binary_request_body_splits_by_header_length_and_sizes():
    x = np.arange(12, dtype=np.float32)
    names = datatypes.serialize_bytes([b"clip-a", b"clip-b"])
    body, length = binary_body(
        {
            "id": "7",
            "inputs": [
                {"name": "x", "shape": [3, 4], "datatype": "FP32", "parameters": {"binary_data_size": 48}},
                {"name": "n", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": len(names)}},
                {"name": "j", "shape": [2], "datatype": "INT64", "data": [[5], [6]]},
            ],
            "outputs": [{"name": "y", "parameters": {"binary_data": True}}],
            "parameters": {"top_k": 3},
        },
        x.tobytes(),
        names,
    )
    req = rest.parse_request(body, length, "m", "1")
    assert (req.model, req.version, req.id, req.parameters) == ("m", "1", "7", {"top_k": 3})
    np.testing.assert_array_equal(req.inputs[0].data, x)
    assert list(req.inputs[1].data) == [b"clip-a", b"clip-b"] and list(req.inputs[2].data) == [5, 6]
    assert req.outputs == [RequestedOutput("y", True, {"binary_data": True})]


@pytest.mark.parametrize(
    "header, chunks, length, message",
    [
        (
            {"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "parameters": {"binary_data_size": 8}}]},
            [b"\0" * 4],
            None,
            "runs past the body",
        ),
        (
            {"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "parameters": {"binary_data_size": 4}}]},
            [b"\0" * 4],
            None,
            "4 bytes of FP32 data, but shape \\[2\\] needs 8",
        ),
        (
            {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "parameters": {"binary_data_size": 4}}]},
            [b"\0" * 12],
            None,
            "8 bytes after the JSON header belong to no input",
        ),
        (
            {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]},
            [],
            "99999",
            "must be a whole number",
        ),
        (
            {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]},
            [],
            "-3",
            "must be a whole number",
        ),
        ({"inputs": [{"name": "x", "shape": [1], "datatype": "BF16", "data": [1]}]}, [], None, "'BF16' is not a v2"),
        ({"inputs": [{"name": "x", "shape": [-1], "datatype": "FP32", "data": [1]}]}, [], None, "negative dimension"),
        ({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32"}]}, [], None, "no 'data'"),
        ({"inputs": []}, [], None, "non-empty list"),
        (
            {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}], "id": 5},
            [],
            None,
            "'id' must be a string",
        ),
        (
            {
                "inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}],
                "outputs": [{"name": "y", "parameters": {"binary_data": "yes"}}],
            },
            [],
            None,
            "binary_data must be true",
        ),
    ],
)
def test_malformed_http_bodies_are_refused_with_the_reason(header, chunks, length, message):
    body, own = binary_body(header, *chunks)
    with pytest.raises(RequestError, match=message):
        rest.parse_request(body, length if length is not None else (own if chunks else None), "m", "")


def test_answer_is_binary_per_output_else_request_wide_else_json():
    y, labels = np.arange(4, dtype=np.float32).reshape(2, 2), np.array([b"a", b"bc"], dtype=object)
    resp = InferResponse("m", "1", "", [InferOutput("y", "FP32", [2, 2], y), InferOutput("l", "BYTES", [2], labels)])
    req = rest.parse_request(
        *binary_body(
            {
                "inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}],
                "outputs": [{"name": "y", "parameters": {"binary_data": True}}, {"name": "l"}],
            }
        ),
        "m",
        "1",
    )
    body, headers = rest.encode_response(resp, req)
    n = int(headers["Inference-Header-Content-Length"])
    doc = json.loads(body[:n])
    assert headers["Content-Type"] == "application/octet-stream" and "id" not in doc
    assert doc["outputs"][0]["parameters"] == {"binary_data_size": 16} and doc["outputs"][1]["data"] == ["a", "bc"]
    np.testing.assert_array_equal(np.frombuffer(body[n:], np.float32).reshape(2, 2), y)
    req.parameters["binary_data_output"], req.outputs = True, []
    body, headers = rest.encode_response(resp, req)
    assert len(body) - int(headers["Inference-Header-Content-Length"]) == 16 + 4 + 1 + 4 + 2
    req.parameters["binary_data_output"] = False
    body, headers = rest.encode_response(resp, req)
    assert headers == {"Content-Type": "application/json"} and json.loads(body)["outputs"][0]["data"] == [0, 1, 2, 3]


def test_grpc_raw_and_typed_contents_decode_alike():
    x = np.arange(6, dtype=np.float32)
    raw = pb.ModelInferRequest(model_name="m", id="r")
    raw.inputs.add(name="x", datatype="FP32", shape=[2, 3])
    raw.raw_input_contents.append(x.tobytes())
    set_parameter(raw.parameters["top_k"], 3)
    typed = pb.ModelInferRequest(model_name="m")
    typed.inputs.add(name="x", datatype="FP32", shape=[2, 3]).contents.fp32_contents.extend(x.tolist())
    for msg in (raw, typed):
        req = request_from_proto(pb.ModelInferRequest.FromString(msg.SerializeToString()))
        np.testing.assert_array_equal(req.inputs[0].data, x)
    assert request_from_proto(raw).parameters == {"top_k": 3} and request_from_proto(raw).id == "r"
    for value in (True, 7, 2.5, "s"):
        p = pb.InferParameter()
        set_parameter(p, value)
        assert parameter_value(p) == value and type(parameter_value(p)) is type(value)


def test_tensor_bytes_move_past_protobuf_in_place_and_parse_to_the_same_message():
    """The client appends each tensor to the serialized header (one copy); the server views them in the body it
    received. Both must mean exactly what protobuf's own encoding means, tritonclient's included."""
    import tritonclient.grpc.service_pb2 as tritongrpc

    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4).transpose(2, 0, 1)  # not contiguous: made so, once
    y = np.arange(5, dtype=">i8")  # big-endian: sent little-endian, as the extension says
    head = pb.ModelInferRequest(model_name="m", id="r")
    head.inputs.add(name="x", datatype="FP32", shape=list(x.shape))
    head.inputs.add(name="y", datatype="INT64", shape=[5])
    set_parameter(head.parameters["top_k"], 3)
    whole = pb.ModelInferRequest()
    whole.CopyFrom(head)
    whole.raw_input_contents.extend([datatypes.to_raw(x), datatypes.to_raw(y)])
    body = append_len_fields(
        head.SerializeToString(), RAW_INPUT_CONTENTS, [datatypes.raw_view(x), datatypes.raw_view(y)]
    )
    assert pb.ModelInferRequest.FromString(body) == whole

    theirs = tritongrpc.ModelInferRequest.FromString(whole.SerializeToString())  # as tritonclient sends it
    for sent in (body, theirs.SerializeToString()):
        msg, raws = parse_infer_request(sent)
        assert not msg.raw_input_contents and all(r.obj is sent for r in raws)  # views, never copies
        req = request_from_proto(msg, raw=raws)
        np.testing.assert_array_equal(req.inputs[0].data.reshape(x.shape), x)
        np.testing.assert_array_equal(req.inputs[1].data, y)
        assert req.parameters == {"top_k": 3} and req.id == "r"
    with pytest.raises(RequestError, match="malformed ModelInferRequest"):
        parse_infer_request(body[:-3])  # a cut tensor: the walk stops, protobuf says why


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda m: m.raw_input_contents.extend([b"\0" * 24, b"\0"]), "2 entries for 1 inputs"),
        (lambda m: m.raw_input_contents.append(b"\0" * 20), "20 bytes of FP32 data, but shape \\[2, 3\\] needs 24"),
        (
            lambda m: (m.raw_input_contents.append(b"\0" * 24), m.inputs[0].contents.fp32_contents.append(1.0)),
            "both typed contents and raw",
        ),
        (lambda m: setattr(m.inputs[0], "datatype", "FLOAT"), "'FLOAT' is not a v2 datatype"),
        (lambda m: setattr(m.inputs[0], "datatype", "FP16"), "FP16 has no typed contents"),
        (
            lambda m: (setattr(m.inputs[0], "datatype", "UINT8"), m.inputs[0].contents.uint_contents.append(999)),
            "do not fit UINT8",
        ),
    ],
)
def test_malformed_grpc_requests_are_refused_with_the_reason(build, message):
    msg = pb.ModelInferRequest(model_name="m")
    msg.inputs.add(name="x", datatype="FP32", shape=[2, 3])
    build(msg)
    with pytest.raises(RequestError, match=message):
        request_from_proto(msg)


def test_grpc_answers_in_raw_contents_in_output_order():
    labels = np.array([b"up", b"down"], dtype=object)
    msg = response_to_proto(
        InferResponse(
            "m",
            "1",
            "9",
            [InferOutput("l", "BYTES", [2], labels), InferOutput("p", "FP32", [2], np.ones(2, np.float32))],
        )
    )
    assert [o.name for o in msg.outputs] == ["l", "p"] and msg.id == "9" and msg.model_version == "1"
    assert list(datatypes.deserialize_bytes(msg.raw_output_contents[0], "l")) == [b"up", b"down"]
    assert np.frombuffer(msg.raw_output_contents[1], np.float32).tolist() == [1.0, 1.0]


def test_tritonclient_and_vslim_messages_live_in_one_process():
    """vslim's v2 messages sit in their own descriptor pool, so Triton's generated modules still import."""
    import tritonclient.grpc.service_pb2 as tritongrpc

    ours = pb.ModelInferRequest(model_name="m")
    ours.inputs.add(name="x", datatype="FP32", shape=[1])
    theirs = tritongrpc.ModelInferRequest.FromString(ours.SerializeToString())
    assert theirs.model_name == "m" and theirs.inputs[0].datatype == "FP32"


def test_numbers_int_cannot_read_and_exact_uint64_values():
    """Found in review: 5,000 digits pass str.isdecimal() but not int(); numpy rounds [2**64-1, 0] to floats."""
    body, _ = binary_body({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]})
    for header in ("9" * 5000, "\u00b2", "-3", " "):
        with pytest.raises(RequestError, match="Inference-Header-Content-Length"):
            rest.parse_request(body, header, "m", "")
    big = [2**64 - 1, 0]
    assert datatypes.from_json(big, "UINT64", "x").tolist() == big
    msg = pb.ModelInferRequest(model_name="m")
    msg.inputs.add(name="x", datatype="UINT64", shape=[2]).contents.uint64_contents.extend(big)
    assert request_from_proto(msg).inputs[0].data.tolist() == big
    with pytest.raises(RequestError, match="do not fit INT64"):
        datatypes.from_json([2**63, -1], "INT64", "x")
    with pytest.raises(RequestError, match="do not fit FP32"):
        datatypes.from_json([1e300], "FP32", "x")


def test_declared_sizes_are_limited_before_any_data_is_decoded():
    from vslim.serving.signature import Limits

    limits = Limits(max_batch=4, max_elements=1000)
    body, length = binary_body(
        {"inputs": [{"name": "v", "shape": [10**12], "datatype": "BYTES", "parameters": {"binary_data_size": 8}}]},
        b"\0" * 8,
    )
    with pytest.raises(RequestError, match="over this server's limit of 1000") as info:
        rest.parse_request(body, length, "m", "", limits)
    assert info.value.kind == "too_large"
    many = datatypes.serialize_bytes([b"x"] * 3)
    with pytest.raises(RequestError, match="more than the 2 element"):
        datatypes.from_raw(many, "BYTES", [2], "v")
    msg = pb.ModelInferRequest(model_name="m")
    msg.inputs.add(name="x", datatype="FP32", shape=[10**9])
    msg.raw_input_contents.append(b"")
    with pytest.raises(RequestError, match="over this server's limit") as info:
        request_from_proto(msg, limits)
    assert info.value.kind == "too_large"


def test_shared_memory_inputs_are_read_in_place_and_outputs_written_there(tmp_path):
    """The shared memory codec on a real /dev/shm object: an input is a view of the region (no copy), an output
    lands at its offset, a gRPC request mixes shared-memory and raw inputs, and every misfit is refused."""
    import os

    from vslim.serving.protocols.v2.shm import NOT_ALLOWED, SHM_ROOT, SharedMemoryRegions

    key = f"/vslim-codec-test-{os.getpid()}"
    path = SHM_ROOT / key[1:]
    path.write_bytes(b"\0" * 4096)
    regions = SharedMemoryRegions(allowed=True)
    try:
        with pytest.raises(RequestError, match="--allow-client-shm"):
            SharedMemoryRegions().register("r", key, 0, 64)
        assert NOT_ALLOWED.startswith("client shared memory is off")
        regions.register("r", key, 1024, 2048)
        assert regions.status() == [{"name": "r", "key": key, "offset": 1024, "byte_size": 2048}]
        x = np.arange(24, dtype=np.float32)
        with open(path, "r+b") as f:  # the client writes its input at offset 64 of the region
            f.seek(1024 + 64)
            f.write(x.tobytes())
        msg = pb.ModelInferRequest(model_name="m")
        shm = msg.inputs.add(name="a", datatype="FP32", shape=[2, 12])
        for k, v in (("shared_memory_region", "r"), ("shared_memory_byte_size", 96), ("shared_memory_offset", 64)):
            set_parameter(shm.parameters[k], v)
        msg.inputs.add(name="b", datatype="INT32", shape=[2])
        msg.raw_input_contents.append(np.array([7, 8], dtype="<i4").tobytes())  # one entry: the input not in shm
        req = request_from_proto(msg, regions=regions)
        np.testing.assert_array_equal(req.inputs[0].data, x)
        assert not req.inputs[0].data.flags.owndata  # a view of the mapping
        np.testing.assert_array_equal(req.inputs[1].data, [7, 8])
        req.outputs = [RequestedOutput("y", None, {"shared_memory_region": "r", "shared_memory_byte_size": 16})]
        y = np.array([[1.5, 2.5], [3.5, 4.5]], dtype=np.float32)
        resp = response_to_proto(InferResponse("m", "1", "", [InferOutput("y", "FP32", [2, 2], y)]), req, regions)
        assert resp.raw_output_contents == [b""]
        assert parameter_value(resp.outputs[0].parameters["shared_memory_byte_size"]) == 16
        assert path.read_bytes()[1024 : 1024 + 16] == y.tobytes()
        # HTTP: the same region from JSON parameters; an output answered with its region, no data
        body = json.dumps(
            {
                "inputs": [
                    {
                        "name": "a",
                        "datatype": "FP32",
                        "shape": [24],
                        "parameters": {
                            "shared_memory_region": "r",
                            "shared_memory_byte_size": 96,
                            "shared_memory_offset": 64,
                        },
                    }
                ],
                "outputs": [{"name": "y", "parameters": {"shared_memory_region": "r", "shared_memory_byte_size": 16}}],
            }
        ).encode()
        req = rest.parse_request(body, None, "m", "", regions=regions)
        np.testing.assert_array_equal(req.inputs[0].data, x)
        answer, headers = rest.encode_response(
            InferResponse("m", "1", "", [InferOutput("y", "FP32", [2, 2], y)]), req, regions
        )
        out = json.loads(answer)["outputs"][0]
        assert "data" not in out and out["parameters"] == {"shared_memory_region": "r", "shared_memory_byte_size": 16}
        for params, shape, message in (
            ({"shared_memory_region": "r"}, [24], "needs both"),
            ({"shared_memory_region": "q", "shared_memory_byte_size": 96}, [24], "no shared memory region named 'q'"),
            ({"shared_memory_region": "r", "shared_memory_byte_size": 92}, [24], "needs 96 bytes"),
            (
                {"shared_memory_region": "r", "shared_memory_byte_size": 96, "shared_memory_offset": 2000},
                [24],
                "do not fit",
            ),
            ({"shared_memory_region": "r", "shared_memory_byte_size": -1}, [24], "whole number"),
        ):
            with pytest.raises(RequestError, match=message):
                regions.read(params, "FP32", shape, "input 'a'")
        with pytest.raises(RequestError, match="more than its"):
            regions.write({"shared_memory_region": "r", "shared_memory_byte_size": 8}, y, "output 'y'")
        for name, bad_key, message in (
            ("s", "/../etc/passwd", "not a POSIX shared memory name"),
            ("s", "a/b", "not a POSIX shared memory name"),
            ("s", "/vslim-no-such-object", "create it on this host first"),
            ("r", key, "already registered"),
        ):
            with pytest.raises(RequestError, match=message):
                regions.register(name, bad_key, 0, 64)
        with pytest.raises(RequestError, match="run past the end"):
            regions.register("s", key, 4000, 200)
        regions.unregister("r")
        assert regions.status() == []
        regions.unregister("never-registered")  # not an error, as in Triton
    finally:
        regions.close()
        path.unlink()
