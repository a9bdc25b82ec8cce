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
    static = paddle.jit.to_static(model, input_spec=[paddle.static.InputSpec([None, 8, 3, 64, 64], "float32")],
                                  full_graph=True)
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
    static = paddle.jit.to_static(model, input_spec=[paddle.static.InputSpec([None, 3, 4, 4], "float32")],
                                  full_graph=True)
    with pytest.raises(Exception, match="refused while tracing"):
        static.forward.concrete_program
    records = ProgramTranslator.get_instance()._params_recorder.params_dict
    assert any(p.name.startswith("batch_norm") for params in records.values() for p in params)
    forget_failed_traces()
    assert not records
