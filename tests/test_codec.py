"""The wire codec on its own: decoding both encodings, validation messages, gzip limits."""

import gzip
import json

import numpy as np
import pytest

from vslim.serving import httpbody
from vslim.serving.errors import RequestError
from vslim.serving.protocols.paddle_serving import codec
from vslim.serving.protocols.paddle_serving.types import config_pb2, service_pb2, signature_of
from vslim.serving.signature import Limits


@pytest.fixture
def sig():
    conf = config_pb2.GeneralModelConfig()
    conf.feed_var.add(name="x", alias_name="x", feed_type=1, shape=[2, 3])
    conf.feed_var.add(name="ids", alias_name="ids", feed_type=0, shape=[4])
    conf.fetch_var.add(name="save_infer_model/scale_0.tmp_0", alias_name="outputs", fetch_type=1, shape=[5])
    return signature_of(conf)


def _proto_request():
    req = service_pb2.Request(fetch_var_names=["outputs"], log_id=3)
    req.tensor.add(name="x", alias_name="x", elem_type=1, shape=[1, 2, 3], float_data=list(range(6)))
    req.tensor.add(name="ids", alias_name="ids", elem_type=0, shape=[1, 4], int64_data=[1, 2, 3, 4])
    return req


def test_proto_and_json_decode_to_the_same_feeds(sig):
    req = _proto_request()
    from_proto = codec.validate(codec.parse_proto(req.SerializeToString()), sig, Limits())
    body = json.dumps(
        {
            "tensor": [
                {"float_data": list(range(6)), "elem_type": 1, "name": "x", "alias_name": "x", "shape": [1, 2, 3]},
                {"int64Data": ["1", "2", "3", "4"], "elemType": 0, "aliasName": "ids", "shape": [1, 4]},
            ],
            "fetchVarNames": ["outputs"],
            "log_id": "3",
        }
    ).encode()
    from_json = codec.validate(codec.parse_json(body), sig, Limits())
    for (feeds_a, fetch_a), (feeds_b, fetch_b) in [(from_proto, from_json)]:
        assert fetch_a == fetch_b == ["save_infer_model/scale_0.tmp_0"]
        for name in ("x", "ids"):
            np.testing.assert_array_equal(feeds_a[name], feeds_b[name])
            assert feeds_a[name].dtype == feeds_b[name].dtype
    assert from_proto[0]["x"].shape == (1, 2, 3) and from_proto[0]["ids"].dtype == np.int64


def test_fetch_defaults_to_every_output_and_accepts_names(sig):
    req = _proto_request()
    del req.fetch_var_names[:]
    assert codec.validate(codec.from_proto(req), sig, Limits())[1] == ["save_infer_model/scale_0.tmp_0"]
    req.fetch_var_names.append("save_infer_model/scale_0.tmp_0")
    assert codec.validate(codec.from_proto(req), sig, Limits())[1] == ["save_infer_model/scale_0.tmp_0"]


@pytest.mark.parametrize(
    "mutate, message, kind",
    [
        (lambda r: r.tensor[1].ClearField("int64_data"), "has 0 values but shape [1, 4] needs 4", "invalid"),
        (lambda r: r.tensor.pop(), "missing feed(s) ['ids']", "invalid"),
        (lambda r: setattr(r.tensor[0], "elem_type", 2), "must be float32 (elem_type 1), got int32", "invalid"),
        (lambda r: r.tensor[0].shape.__setitem__(0, 0), "non-positive dimension", "invalid"),
        (lambda r: r.tensor[0].shape.__setitem__(0, 1000), "over this server's limit", "too_large"),
        (lambda r: r.tensor[1].shape.__setitem__(0, 2), "feeds disagree on the batch size", "invalid"),
        (lambda r: r.tensor.add().CopyFrom(r.tensor[0]), "given twice", "invalid"),
        (lambda r: setattr(r.tensor[0], "elem_type", 13), "elem_type 13", "invalid"),
    ],
)
def test_validation_names_the_problem(sig, mutate, message, kind):
    req = _proto_request()
    mutate(req)
    if message == "feeds disagree on the batch size":
        req.tensor[1].int64_data.extend([5, 6, 7, 8])
    with pytest.raises(RequestError) as info:
        codec.validate(codec.from_proto(req), sig, Limits(max_batch=64))
    assert message in str(info.value) and info.value.kind == kind


@pytest.mark.parametrize(
    "body, message",
    [
        (b"[1, 2]", "must be an object"),
        (b'{"tensor": {"x": 1}}', "'tensor' must be a list"),
        (b'{"tensor": [{"float_data": "abc", "elem_type": 1}]}', "must be a list"),
        (b'{"tensor": [{"float_data": ["a"], "elem_type": 1}]}', "flat list of float32"),
        (b'{"tensor": [{"shape": [1.5]}]}', "shape must be an integer"),
        (b'{"tensor": [{"elem_type": true}]}', "elem_type must be an integer"),
        (b'{"tensor": [], "log_id": "x"}', "log_id must be an integer"),
        (b'{"tensor": [{"tensor_content": "%%%", "elem_type": 7}]}', "not valid base64"),
        (b"\xff\xfe", "malformed JSON"),
    ],
)
def test_json_decoding_errors(body, message):
    with pytest.raises(RequestError, match=message.replace("(", r"\(").replace("[", r"\[")):
        codec.parse_json(body)


def test_gzip_is_bounded():
    data = b"x" * 1000
    assert httpbody.decode_body(gzip.compress(data), "gzip", 2000) == data
    with pytest.raises(RequestError) as info:
        httpbody.decode_body(gzip.compress(b"\0" * (10 << 20)), "gzip", 1 << 20)
    assert info.value.kind == "too_large"
    with pytest.raises(RequestError, match="truncated"):
        httpbody.decode_body(gzip.compress(data)[:-12], "gzip", 2000)
    with pytest.raises(RequestError) as info:
        httpbody.decode_body(data, "br", 2000)
    assert info.value.kind == "unsupported"


def test_response_json_keeps_proto_field_names_and_numbers(sig):
    resp = codec.response({"save_infer_model/scale_0.tmp_0": np.arange(5, dtype=np.float32)[None]}, sig, 7)
    answer = json.loads(codec.response_json(resp))
    assert answer["err_no"] == 0 and answer["err_msg"] == "" and answer["log_id"] == 7
    t = answer["outputs"][0]["tensor"][0]
    assert t == {
        "float_data": [0.0, 1.0, 2.0, 3.0, 4.0],
        "elem_type": 1,
        "shape": [1, 5],
        "name": "save_infer_model/scale_0.tmp_0",
        "alias_name": "outputs",
    }
    assert codec.outputs_of(resp)["outputs"].shape == (1, 5)


def test_fastwire_encoding_parses_to_the_protobuf_message():
    from vslim.serving.protocols.paddle_serving import fastwire

    rng = np.random.default_rng(0)
    feeds = [
        ("x", "x", rng.standard_normal((2, 3)).astype(np.float32)),
        ("d", "d", rng.standard_normal(4)),
        ("ids", "ids", np.arange(4, dtype=np.int64)[None]),
        ("u8", "u8", np.arange(6, dtype=np.uint8)),
    ]
    body = fastwire.encode_request(feeds, ["outputs"], log_id=11)
    req = service_pb2.Request.FromString(body)
    assert list(req.fetch_var_names) == ["outputs"] and req.log_id == 11
    for (name, alias, array), t in zip(feeds, req.tensor):
        assert (t.name, t.alias_name, list(t.shape)) == (name, alias, list(array.shape))
        from vslim.serving.protocols.paddle_serving.types import tensor_values

        np.testing.assert_array_equal(tensor_values(t), array.reshape(-1))
    rest, payloads = fastwire.split_packed(body)
    np.testing.assert_array_equal(payloads[0][2], feeds[0][2].reshape(-1))
    np.testing.assert_array_equal(payloads[1][4], feeds[1][2])
    assert payloads[2] == payloads[3] == {} and len(rest) < 200  # int64 and uint8 stay in the message
    wire = codec.parse_proto(body)
    for t, (_, _, array) in zip(wire.tensors, feeds):
        np.testing.assert_array_equal(t.values, array.reshape(-1))
    assert np.shares_memory(wire.tensors[0].values, np.frombuffer(body, np.uint8))  # a view of the body


def test_values_in_a_field_their_type_does_not_read_are_refused():
    t = service_pb2.Tensor(name="x", alias_name="x", elem_type=0, shape=[2], float64_data=[1.0, 2.0])
    body = service_pb2.Request(tensor=[t]).SerializeToString()
    with pytest.raises(RequestError, match="values are in float64_data, but elem_type 0"):
        codec.parse_proto(body)


def test_unpacked_or_split_floats_fall_back_to_protobuf():
    """Legal encodings fastwire does not view in place still decode to the right values."""
    t = service_pb2.Tensor(name="x", alias_name="x", elem_type=1, shape=[1, 3])
    body = bytearray(t.SerializeToString())
    for v in (1.5, -2.0, 3.25):  # unpacked: one (tag, value) per element
        body += bytes([2 << 3 | 5]) + np.float32(v).tobytes()
    req_bytes = bytes([1 << 3 | 2, len(body)]) + bytes(body)
    wire = codec.parse_proto(req_bytes)
    np.testing.assert_array_equal(wire.tensors[0].values, [1.5, -2.0, 3.25])
    half = service_pb2.Tensor(float_data=[1.0]).SerializeToString()
    split = t.SerializeToString() + half + half + half
    wire = codec.parse_proto(bytes([1 << 3 | 2, len(split)]) + split)
    np.testing.assert_array_equal(wire.tensors[0].values, [1.0, 1.0, 1.0])


@pytest.mark.parametrize(
    "log_id, message",
    [
        ("--5", "must be an integer"),
        (-1, "\\[0, 2\\^64\\)"),
        (2**64, "\\[0, 2\\^64\\)"),
        ("9" * 5000, "must be an integer"),
    ],
)
def test_log_ids_that_int_or_the_message_cannot_hold_are_refused(log_id, message):
    """Found in review: '--5' passed a check-then-int() and a negative log_id broke the Response."""
    body = json.dumps({"tensor": [], "log_id": log_id}).encode()
    with pytest.raises(RequestError, match=message):
        codec.parse_json(body)
