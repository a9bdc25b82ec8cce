"""Model zoo: PaddleVideo parameter names, weight loading, errors that name the key."""

import numpy as np
import paddle
import pytest

from vslim.errors import ModelError
from vslim.models import ARCHS, build_model
from vslim.models.weights import load_weights, read_state_dict

# Keys as PaddleVideo's PP-TSM R50 checkpoints (ppTSM_k400_uniform.pdparams) name them, with shapes.
PADDLEVIDEO_PPTSM_KEYS = {
    "backbone.conv1_1._conv.weight": [32, 3, 3, 3],
    "backbone.conv1_1._batch_norm.weight": [32],
    "backbone.conv1_1._batch_norm._mean": [32],
    "backbone.conv1_3._batch_norm._variance": [64],
    "backbone.bb_0_0.short._conv.weight": [256, 64, 1, 1],
    "backbone.bb_1_0.short._conv.weight": [512, 256, 1, 1],
    "backbone.bb_3_2.conv2._batch_norm._variance": [2048],
    "backbone.bb_2_5.conv1._conv.weight": [256, 256, 3, 3],
    "head.fc.weight": [2048, 400],
    "head.fc.bias": [400],
}


@pytest.fixture(scope="module")
def pptsm_r50():
    return build_model("pptsm_r50", 400)


def test_pptsm_r50_state_dict_matches_paddlevideo(pptsm_r50):
    sd = pptsm_r50.state_dict()
    assert len(sd) == 277
    for key, shape in PADDLEVIDEO_PPTSM_KEYS.items():
        assert key in sd, key
        assert list(sd[key].shape) == shape, key


def test_tsm_r50_uses_paddlevideo_block_names():
    sd = build_model("tsm_r50", 400).state_dict()
    assert "backbone.conv._conv.weight" in sd
    assert list(sd["backbone.res2a.short._conv.weight"].shape) == [256, 64, 1, 1]
    assert list(sd["backbone.res5c.conv2._conv.weight"].shape) == [2048, 512, 1, 1]


def test_paddlevideo_keyed_state_dict_loads_into_our_model(tmp_path, pptsm_r50):
    # A checkpoint as PaddleVideo saves it: every key of its state_dict, random values.
    rng = np.random.default_rng(0)
    state = {k: rng.standard_normal(list(v.shape)).astype("float32") * 0.01 for k, v in pptsm_r50.state_dict().items()}
    for key in PADDLEVIDEO_PPTSM_KEYS:
        assert key in state
    path = tmp_path / "ppTSM_k400.pdparams"
    paddle.save(state, str(path))
    model = build_model("pptsm_r50", 400)
    load_weights(model, read_state_dict(path), str(path))
    got = model.state_dict()
    for key in PADDLEVIDEO_PPTSM_KEYS:
        np.testing.assert_array_equal(got[key].numpy(), state[key])


def test_mismatched_weights_name_the_key_and_shapes(tmp_path):
    small = build_model("pptsm_small", 10)
    state = {k: v.numpy() for k, v in small.state_dict().items()}
    with pytest.raises(ModelError, match=r"lacks 'backbone\.bb_0_1\.conv0\._conv\.weight'"):
        load_weights(build_model("pptsm_r50", 10), state, "small.pdparams")
    wrong = dict(state)
    wrong["head.fc.weight"] = np.zeros((256, 7), "float32")
    with pytest.raises(ModelError, match=r"'head\.fc\.weight' has shape \[256, 7\] in the weights but \[256, 10\]"):
        load_weights(build_model("pptsm_small", 10), wrong, "w")
    extra = dict(state, **{"head.extra": np.zeros(3, "float32")})
    with pytest.raises(ModelError, match="unexpected key 'head.extra'"):
        load_weights(build_model("pptsm_small", 10), extra, "w")


def test_unreadable_weights(tmp_path):
    bad = tmp_path / "bad.pdparams"
    bad.write_bytes(b"definitely not a pickle")
    with pytest.raises(ModelError, match="cannot be read"):
        read_state_dict(bad)
    with pytest.raises(ModelError, match="does not exist"):
        read_state_dict(tmp_path / "none.pdparams")


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_every_arch_classifies_a_clip_batch(arch):
    spec = ARCHS[arch]
    size = 64 if arch == "pptsm_small" else 96
    model = build_model(arch, 5)
    model.eval()
    x = paddle.randn([2, spec.preprocess.num_seg, 3, size, size])
    assert model(x).shape == [2, 5]


def test_head_reshapes_instead_of_flattening():
    """Lite's x86 optimizer crashes on flatten_contiguous_range (docs/architecture.md, Paddle Lite)."""
    model = build_model("pptsm_small", 3)
    model.eval()
    static = paddle.jit.to_static(
        model, input_spec=[paddle.static.InputSpec([None, 8, 3, 64, 64], "float32")], full_graph=True
    )
    ops = {op.type for op in static.forward.concrete_program.main_program.global_block().ops}
    assert "flatten_contiguous_range" not in ops and "reshape2" in ops


class _FailsWhenTraced(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.bn = paddle.nn.BatchNorm2D(3)

    def forward(self, x):
        self.bn(x)
        raise ValueError("refused while tracing")


def test_a_failed_conversion_leaves_no_parameters_for_the_next_one():
    """Paddle keeps the parameters of a conversion that raised, keyed by id(program); a later program with the
    same id inherited them (CI: KeyError 'batch_norm2d_35.b_0_deepcopy_82' in jit.save). vslim clears them
    right before it converts."""
    from paddle.jit.dy2static.program_translator import ProgramTranslator

    from vslim.dy2static import forget_failed_traces

    model = _FailsWhenTraced()
    model.eval()
    static = paddle.jit.to_static(
        model, input_spec=[paddle.static.InputSpec([None, 3, 4, 4], "float32")], full_graph=True
    )
    with pytest.raises(Exception, match="refused while tracing"):
        _ = static.forward.concrete_program
    records = ProgramTranslator.get_instance()._params_recorder.params_dict
    assert any(p.name.startswith("batch_norm") for params in records.values() for p in params)
    forget_failed_traces()
    assert not records


# Keys and shapes of PaddleVideo's PP-TSMv2 (ppTSMv2_k400_16f / pptsm_lcnet configs): 278 tensors, the
# classifier inside the backbone, 280 with the 16-frame distillation configs' temporal attention.
PADDLEVIDEO_PPTSMV2_KEYS = {
    "backbone.stem.0.conv.weight": [32, 3, 3, 3],
    "backbone.stem.1.dw_conv.conv.weight": [32, 1, 3, 3],
    "backbone.stages.2.0.dw_conv_list.0.conv.weight": [256, 1, 5, 5],
    "backbone.stages.2.0.dw_conv.weight": [256, 1, 5, 5],
    "backbone.stages.2.0.dw_conv.bias": [256],
    "backbone.stages.2.0.se.conv1.weight": [64, 256, 1, 1],
    "backbone.stages.2.1.pw_conv_1.conv.weight": [256, 512, 1, 1],
    "backbone.stages.3.1.dw_conv_list.2.bn._variance": [1024],
    "backbone.last_conv.weight": [1280, 1024, 1, 1],
    "backbone.fc.weight": [1280, 400],
}


def _random_bn(model, seed=0):
    """Trained-looking batch-norm statistics, so folding has something to fold."""
    rng = np.random.default_rng(seed)
    for key, value in model.state_dict().items():
        if key.endswith("_variance"):
            value.set_value(rng.uniform(0.5, 1.5, value.shape).astype("float32"))
        elif key.endswith(("_mean", "bn.bias")):
            value.set_value(rng.uniform(-0.1, 0.1, value.shape).astype("float32"))


def test_pptsm_v2_state_dict_matches_paddlevideo():
    sd = build_model("pptsm_v2", 400).state_dict()
    assert len(sd) == 278
    for key, shape in PADDLEVIDEO_PPTSMV2_KEYS.items():
        assert list(sd[key].shape) == shape, key
    att = build_model("pptsm_v2_att", 400).state_dict()
    assert set(att) - set(sd) == {"backbone.global_attention.fc.weight", "backbone.global_attention.fc.bias"}
    assert list(att["backbone.global_attention.fc.weight"].shape) == [8, 8]


@pytest.mark.parametrize("arch", ["pptsm_v2", "pptsm_v2_att"])
def test_pptsm_v2_folding_keeps_the_outputs_and_drops_the_branches(arch):
    paddle.seed(0)
    model = build_model(arch, 7)
    _random_bn(model)
    model.eval()
    x = paddle.to_tensor(np.random.default_rng(1).standard_normal([2, 8, 3, 64, 64]).astype("float32"))
    before = model(x).numpy()
    ARCHS[arch].before_export(model)
    after = model(x).numpy()
    assert np.abs(before).max() > 0.1  # not a degenerate all-zero model
    np.testing.assert_allclose(after, before, atol=1e-4 * np.abs(before).max())
    assert not [k for k in model.state_dict() if "dw_conv_list" in k]
    ARCHS[arch].before_export(model)  # folding twice is a no-op
    np.testing.assert_array_equal(model(x).numpy(), after)


def test_a_paddlevideo_pptsm_v2_checkpoint_exports_with_the_same_answers(tmp_path):
    """A checkpoint keyed as PaddleVideo saves it (unfolded) exports folded, computing what it computed."""
    from vslim.config import PredictorConfig
    from vslim.export import export_model
    from vslim.inference import PaddlePredictor

    paddle.seed(0)
    source = build_model("pptsm_v2", 6, 4)
    _random_bn(source)
    state = {k: v.numpy() for k, v in source.state_dict().items()}
    path = tmp_path / "ppTSMv2.pdparams"
    paddle.save(state, str(path))
    source.eval()
    x = np.random.default_rng(2).standard_normal([1, 4, 3, 64, 64]).astype("float32")
    expected = source(paddle.to_tensor(x)).numpy()
    out = export_model(path, tmp_path / "inference", arch="pptsm_v2", num_seg=4, target_size=64, short_size=72)
    got = PaddlePredictor(out, PredictorConfig(use_onednn=False, threads=1, probe=False)).run(x)
    np.testing.assert_allclose(got, expected, atol=1e-4 * np.abs(expected).max())
    from vslim.inference.program import parse_program

    ops = [op.type for op in parse_program(out / "model.pdmodel").blocks[0].ops]
    assert ops.count("temporal_shift") == 1
    assert ops.count("depthwise_conv2d") == 13  # one per block: the branches were folded
