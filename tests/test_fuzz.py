"""Property-based fuzzing of every decoder and config loader: a well-formed error or a right answer.

Bounded for CI (``VSLIM_FUZZ_EXAMPLES``, default 200 per property); run longer with
e.g. ``VSLIM_FUZZ_EXAMPLES=20000 pytest tests/test_fuzz.py``.
"""

import base64
import gzip
import json
import os
import zlib

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vslim.compress.config import PTQConfig
from vslim.config import ListConfig, PreprocessConfig, from_mapping, load_yaml
from vslim.data.lists import read_list
from vslim.errors import ConfigError, DataError
from vslim.serving import httpbody
from vslim.serving.errors import RequestError
from vslim.serving.protocols.paddle_serving import codec
from vslim.serving.protocols.paddle_serving.types import config_pb2, service_pb2, signature_of, tensor_values
from vslim.serving.protocols.v2 import datatypes as v2types
from vslim.serving.protocols.v2 import rest
from vslim.serving.protocols.v2.grpc import parse_infer_request, request_from_proto
from vslim.serving.protocols.v2.proto import pb as v2pb
from vslim.serving.signature import Limits, TensorIn, check_inputs

EXAMPLES = int(os.environ.get("VSLIM_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
LIMITS = Limits(max_batch=4, max_elements=1 << 16)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=20,
)
field_names = st.sampled_from(
    [
        "tensor",
        "fetch_var_names",
        "log_id",
        "profile_server",
        "float_data",
        "int64_data",
        "elem_type",
        "shape",
        "name",
        "alias_name",
        "tensor_content",
        "floatData",
        "x",
    ]
)


@pytest.fixture(scope="module")
def signature():
    conf = config_pb2.GeneralModelConfig()
    conf.feed_var.add(name="x", alias_name="x", feed_type=1, shape=[2, 3])
    conf.fetch_var.add(name="y", alias_name="outputs", fetch_type=1, shape=[4])
    return signature_of(conf)


def _check_feeds(feeds, fetch, sig):
    ((name, array),) = feeds.items()
    assert name == "x" and array.dtype == np.float32 and array.shape[1:] == (2, 3)
    assert 1 <= array.shape[0] <= LIMITS.max_batch and fetch == ["y"]


@FUZZ
@given(body=st.binary(max_size=512))
def test_any_bytes_as_protobuf_or_json(body, signature):
    for parse in (codec.parse_proto, codec.parse_json):
        try:
            feeds, fetch = codec.validate(parse(body), signature, LIMITS)
        except RequestError as exc:
            assert str(exc) and exc.kind in ("invalid", "too_large")
        else:
            _check_feeds(feeds, fetch, signature)


@FUZZ
@given(
    obj=st.dictionaries(field_names, json_values, max_size=4)
    | st.fixed_dictionaries({"tensor": st.lists(st.dictionaries(field_names, json_values, max_size=6), max_size=3)})
)
def test_structured_json_requests(obj, signature):
    try:
        feeds, fetch = codec.validate(codec.parse_json(json.dumps(obj).encode()), signature, LIMITS)
    except RequestError as exc:
        assert str(exc)
    else:
        _check_feeds(feeds, fetch, signature)


@FUZZ
@given(
    shape=st.lists(st.integers(-3, 5), max_size=5),
    elem_type=st.integers(-2, 25),
    n=st.integers(0, 70),
    name=st.sampled_from(["x", "y", "", "zz"]),
    fetch=st.lists(st.sampled_from(["outputs", "y", "q"]), max_size=2),
    packed=st.booleans(),
)
def test_generated_protobuf_requests(shape, elem_type, n, name, fetch, packed, signature):
    req = service_pb2.Request(fetch_var_names=fetch)
    t = req.tensor.add(name=name, alias_name=name, elem_type=elem_type, shape=shape)
    values = np.arange(n, dtype=np.float32)
    if packed:
        t.float_data.extend(values.tolist())
    else:
        t.tensor_content = values.tobytes()
    try:
        feeds, got_fetch = codec.validate(codec.parse_proto(req.SerializeToString()), signature, LIMITS)
    except RequestError as exc:
        assert str(exc)
    else:
        _check_feeds(feeds, got_fetch, signature)
        np.testing.assert_array_equal(feeds["x"].reshape(-1), values)


@FUZZ
@given(
    runs=st.lists(st.lists(st.floats(width=32, allow_nan=False), max_size=5), max_size=3),
    elem_type=st.sampled_from([0, 1, 3]),  # int64 (floats in the wrong field), float32, float64
    noise=st.binary(max_size=24),
)
def test_packed_runs_taken_in_place_decode_as_protobuf_does(runs, elem_type, noise):
    """split_packed views float runs in the body and protobuf parses the rest: whatever the bytes, the values
    are protobuf's own, or the request is refused."""
    req = service_pb2.Request(fetch_var_names=["y"])
    for i, values in enumerate(runs):
        t = req.tensor.add(name=f"t{i}", elem_type=elem_type, shape=[len(values)])
        (t.float64_data if elem_type == 3 else t.float_data).extend(values)
    whole = req.SerializeToString()
    body = whole[: len(whole) // 2] + noise + whole[len(whole) // 2 :]
    try:
        expected = service_pb2.Request.FromString(body)
    except Exception:
        expected = None
    try:
        wire = codec.parse_proto(body)
    except RequestError as exc:
        assert str(exc)
        return
    assert expected is not None, "accepted what protobuf refuses"
    for got, t in zip(wire.tensors, expected.tensor, strict=True):
        if t.elem_type in (1, 3):
            np.testing.assert_array_equal(got.values, tensor_values(t))


# --------------------------------------------------------------------------- v2 (Open Inference Protocol)

V2_DATATYPES = st.sampled_from([*v2types.DATATYPES, "BF16", "FLOAT", ""])
v2_shapes = st.lists(st.integers(-2, 4), max_size=4)


def _check_v2(req, signature):
    """A decoded v2 request either fits the model exactly or is refused with a message, as the server does."""
    tensors = [TensorIn(i.name, v2types.DTYPES.get(i.datatype), i.datatype, i.shape, i.data) for i in req.inputs]
    try:
        feeds = check_inputs(tensors, signature, LIMITS, v2types.WORDING)
    except RequestError as exc:
        assert str(exc) and exc.kind in ("invalid", "too_large")
    else:
        ((name, array),) = feeds.items()
        assert name == "x" and array.dtype == np.float32 and array.shape[1:] == (2, 3)


@FUZZ
@given(body=st.binary(max_size=512), header=st.none() | st.integers(-5, 600).map(str) | st.text(max_size=6))
def test_any_bytes_as_a_v2_http_body(body, header, signature):
    try:
        req = rest.parse_request(body, header, "m", "", LIMITS)
    except RequestError as exc:
        assert str(exc) and exc.kind in ("invalid", "too_large")
    else:
        _check_v2(req, signature)


@FUZZ
@given(
    inputs=st.lists(
        st.fixed_dictionaries(
            {"name": st.sampled_from(["x", "y", ""]), "datatype": V2_DATATYPES, "shape": v2_shapes},
            optional={
                "data": json_values,
                "parameters": st.fixed_dictionaries(
                    {}, optional={"binary_data_size": st.integers(-4, 40) | json_values}
                ),
            },
        ),
        max_size=3,
    ),
    tail=st.binary(max_size=64),
    extra=st.dictionaries(st.sampled_from(["id", "parameters", "outputs"]), json_values, max_size=2),
)
def test_structured_v2_http_requests(inputs, tail, extra, signature):
    head = json.dumps({"inputs": inputs, **extra}).encode()
    try:
        req = rest.parse_request(head + tail, str(len(head)), "m", "1", LIMITS)
    except RequestError as exc:
        assert str(exc) and exc.kind in ("invalid", "too_large")
    else:
        _check_v2(req, signature)


@FUZZ
@given(
    shape=v2_shapes,
    datatype=V2_DATATYPES,
    raw=st.none() | st.binary(max_size=64),
    typed=st.lists(st.floats(allow_nan=False, width=32), max_size=12),
    name=st.sampled_from(["x", "y"]),
    extra_raw=st.booleans(),
)
def test_generated_v2_grpc_requests(shape, datatype, raw, typed, name, extra_raw, signature):
    msg = v2pb.ModelInferRequest(model_name="m")
    t = msg.inputs.add(name=name, datatype=datatype, shape=shape)
    if raw is not None:
        msg.raw_input_contents.append(raw)
        if extra_raw:
            msg.raw_input_contents.append(raw)
    else:
        t.contents.fp32_contents.extend(typed)
    try:
        parsed, tensors = parse_infer_request(msg.SerializeToString())
        req = request_from_proto(parsed, LIMITS, raw=tensors)
    except RequestError as exc:
        assert str(exc) and exc.kind in ("invalid", "too_large")
    else:
        _check_v2(req, signature)


def _infer_request_bytes(tensors: list[bytes], noise: bytes) -> bytes:
    msg = v2pb.ModelInferRequest(model_name="m", id="i")
    for i, t in enumerate(tensors):
        msg.inputs.add(name=f"x{i}", datatype="UINT8", shape=[len(t)])
        msg.raw_input_contents.append(t)
    whole = msg.SerializeToString()
    cut = len(whole) // 2
    return whole[:cut] + noise + whole[cut:]  # noise anywhere in the middle: fields, or garbage


@FUZZ
@given(tensors=st.lists(st.binary(max_size=40), max_size=3), noise=st.binary(max_size=24))
def test_v2_tensor_bytes_taken_in_place_parse_as_protobuf_does(tensors, noise):
    body = _infer_request_bytes(tensors, noise)
    try:
        expected = v2pb.ModelInferRequest.FromString(body)
    except Exception:
        expected = None
    try:
        msg, raws = parse_infer_request(body)
    except RequestError as exc:
        assert expected is None and "malformed ModelInferRequest" in str(exc)
        return
    assert expected is not None, "accepted what protobuf refuses"
    assert [bytes(r) for r in raws] == list(expected.raw_input_contents)
    if not msg.raw_input_contents:  # taken out in place (the fallback leaves them in)
        msg.raw_input_contents.extend(bytes(r) for r in raws)
    assert msg == expected


@FUZZ
@given(raw=st.binary(max_size=300))
def test_v2_bytes_tensors(raw):
    try:
        elements = v2types.deserialize_bytes(raw, "x")
    except RequestError as exc:
        assert "x:" in str(exc)
    else:
        assert v2types.serialize_bytes(elements) == raw


@FUZZ
@given(
    data=st.binary(max_size=256),
    how=st.sampled_from(["raw", "gzip", "gzip-cut", "deflate"]),
    encoding=st.sampled_from(["gzip", "deflate", "identity", None, "br", "GZIP"]),
)
def test_content_encodings(data, how, encoding):
    body = {
        "raw": data,
        "gzip": gzip.compress(data),
        "gzip-cut": gzip.compress(data)[:-5],
        "deflate": zlib.compress(data),
    }[how]
    try:
        out = httpbody.decode_body(body, encoding, 1 << 10)
    except RequestError as exc:
        assert exc.kind in ("invalid", "too_large", "unsupported")
    else:
        assert len(out) <= 1 << 10


@FUZZ
@given(
    frames=st.binary(max_size=200),
    shape=st.text(max_size=30) | st.tuples(*[st.integers(-2, 6)] * 4).map(str),
    extra=st.dictionaries(st.sampled_from(["logid", "name", "bogus"]), st.text(max_size=5), max_size=2),
    b64=st.booleans(),
)
def test_video_endpoint_bodies(frames, shape, extra, b64):
    value = base64.b64encode(frames).decode() if b64 else frames.decode("latin-1")
    body = json.dumps({"key": ["frames", "frames_shape"], "value": [value, shape], **extra}).encode()
    try:
        array, _ = codec.parse_frames(body, 1 << 20)
    except RequestError as exc:
        assert str(exc)
    else:
        assert array.dtype == np.uint8 and array.ndim == 4 and array.shape[3] == 3


@FUZZ
@given(
    data=st.dictionaries(
        st.sampled_from(["num_seg", "seg_len", "short_size", "target_size", "fixed_ratio", "mean", "std", "shortsize"]),
        json_values,
        max_size=4,
    )
)
def test_config_loader(data):
    try:
        cfg = from_mapping(PreprocessConfig, data)
        cfg.validate()
    except ConfigError as exc:
        assert str(exc)


@FUZZ
@given(text=st.text(max_size=200))
def test_yaml_and_list_files(text, tmp_path_factory):
    folder = tmp_path_factory.mktemp("fz")
    path = folder / "f.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        data = load_yaml(path)
        from_mapping(PTQConfig, data, "f.yaml").validate()
    except ConfigError as exc:
        assert str(exc)
    (folder / "f.list").write_text(text, encoding="utf-8")
    try:
        entries = read_list(ListConfig(str(folder / "f.list")))
    except (DataError, ConfigError) as exc:
        assert str(exc)
    else:
        assert entries and all(e.label >= 0 for e in entries)


@FUZZ
@given(
    mutation=st.dictionaries(
        st.sampled_from(["DATASET", "PIPELINE", "model_name", "batch_nums", "extra"]), json_values, max_size=2
    )
)
def test_paddlevideo_yaml_mutations(mutation, tmp_path_factory):
    from test_paddlevideo_config import UPSTREAM

    from vslim.paddlevideo_config import ptq_config_from_paddlevideo

    data = yaml.safe_load(UPSTREAM)
    data.update(mutation)
    path = tmp_path_factory.mktemp("pv") / "q.yaml"
    path.write_text(yaml.safe_dump(data))
    try:
        ptq_config_from_paddlevideo(path)
    except (ConfigError, TypeError, ValueError) as exc:
        # TypeError/ValueError would be a bug: every malformed value must be a ConfigError
        assert isinstance(exc, ConfigError), repr(exc)


@pytest.fixture(scope="module")
def small_mp4(tmp_path_factory):
    """H.264 with B-frames and the index at the front ("faststart"), so a cut file still opens
    and the damage reaches the decoders instead of failing at the missing index."""
    import av

    from vslim.data.synth import render_clip

    path = tmp_path_factory.mktemp("mp4") / "clip.mp4"
    with av.open(str(path), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.options = {"bf": "2", "x264-params": "keyint=10:scenecut=0"}
        for frame in render_clip(2, np.random.default_rng(0), 40, 48, 64):
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    data = path.read_bytes()
    assert data[4:8] == b"ftyp" and data.find(b"moov") < data.find(b"mdat")
    return data


@FUZZ
@given(
    edits=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=8),
    cut=st.just(1.0) | st.floats(0.05, 1.0),
    decoder=st.sampled_from(["pyav", "opencv"]),
)
def test_corrupted_video_files(edits, cut, decoder, small_mp4, tmp_path_factory):
    """What /video/classify and `vslim predict` decode: damaged bytes give frames or a DataError, never a crash."""
    from vslim.data.decode import open_video

    body = bytearray(small_mp4[: max(1, int(len(small_mp4) * cut))])
    for where, value in edits:
        body[int(where * len(body))] = value
    path = tmp_path_factory.mktemp("bad") / "clip.mp4"
    path.write_bytes(bytes(body))
    try:
        with open_video(path, decoder) as reader:
            frames = reader.read([0, reader.num_frames // 2, reader.num_frames - 1])
    except DataError as exc:
        assert str(path) in str(exc)
    else:
        assert frames.dtype == np.uint8 and frames.shape[0] == 3 and frames.shape[3] == 3
