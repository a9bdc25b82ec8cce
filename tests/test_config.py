import pytest

from vslim.compress.config import PTQConfig
from vslim.config import ListConfig, PreprocessConfig, from_mapping, load_yaml
from vslim.errors import ConfigError, VslimError


def test_unknown_key_is_named_with_a_suggestion():
    with pytest.raises(ConfigError, match=r"unknown key 'shortsize'.*did you mean 'short_size'"):
        from_mapping(PreprocessConfig, {"shortsize": 256})


def test_nested_unknown_key_names_its_path():
    with pytest.raises(ConfigError, match=r"cfg.calib: unknown key 'file'"):
        from_mapping(PTQConfig, {"model_dir": "m", "output_dir": "o", "calib": {"file": "x"}}, "cfg")


def test_missing_and_mistyped_values():
    with pytest.raises(ConfigError, match="missing required key 'file_path'"):
        from_mapping(ListConfig, {})
    with pytest.raises(ConfigError, match="expected a whole number"):
        from_mapping(PreprocessConfig, {"num_seg": 2.5})
    with pytest.raises(ConfigError, match="expected true or false"):
        from_mapping(PreprocessConfig, {"fixed_ratio": "yes"})


@pytest.mark.parametrize(
    "data, message",
    [
        ({"num_seg": None}, "num_seg: a value is required here, got null"),
        ({"short_size": float("inf")}, "short_size: expected a .finite. number, got inf"),
        ({"mean": [0.5, None, 1]}, r"mean\[1\]: a value is required here"),
        ({"std": "abc"}, "std: expected a list"),
    ],
)
def test_null_infinite_and_mistyped_values_found_by_fuzzing(data, message):
    """Each once escaped as TypeError/OverflowError from deep in the pipeline (tests/test_fuzz.py found them)."""
    with pytest.raises(ConfigError, match=message):
        from_mapping(PreprocessConfig, data).validate()


def test_values_are_converted():
    pre = from_mapping(PreprocessConfig, {"num_seg": 4, "mean": [0.5, 0.5, 0.5]})
    assert pre.num_seg == 4 and pre.mean == (0.5, 0.5, 0.5)


def test_preprocess_validation():
    with pytest.raises(ConfigError, match="centre crop must fit"):
        PreprocessConfig(short_size=64, target_size=128).validate()
    with pytest.raises(ConfigError, match="num_seg must be >= 1"):
        PreprocessConfig(num_seg=0).validate()


def test_ptq_config_validation():
    calib = ListConfig("c.list")
    assert PTQConfig("m", "o", calib, algo="kl").validate().algo == "KL"
    with pytest.raises(ConfigError, match="unknown PTQ algorithm 'fast'"):
        PTQConfig("m", "o", calib, algo="fast").validate()
    with pytest.raises(ConfigError, match="auto.*give val"):
        PTQConfig("m", "o", calib, algo="auto").validate()


def test_yaml_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml is not valid YAML"):
        load_yaml(bad)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigError, match="is empty"):
        load_yaml(empty)
    with pytest.raises(ConfigError, match="does not exist"):
        load_yaml(tmp_path / "nope.yaml")


def test_the_split_of_threads_between_workers(tmp_path):
    """Which (workers, threads) vslim-package measures, and which one vslim-serve runs: the bundle's measured split
    when neither flag is given and the bundle is served on its measured runtime; the flags (or their defaults)
    otherwise."""
    import json

    from vslim.inference.layout import splits
    from vslim.serving.config import ServerConfig

    assert splits(1) == [(1, 1)] and splits(2) == [(1, 2), (2, 1)] and splits(6) == [(1, 6), (2, 3)]
    assert splits(16) == [(1, 16), (2, 8), (4, 4), (8, 2), (16, 1)]
    measured = tmp_path / "measured"
    measured.mkdir()
    (measured / "runtime.json").write_text(
        json.dumps({"chosen": {"runtime": "paddle", "precision": "fp32"}, "layout": {"workers": 2, "threads": 1}})
    )
    plain = tmp_path / "plain"
    plain.mkdir()
    cfg = ServerConfig(bundle=str(measured))
    assert cfg.for_bundle(measured).split == (2, 1)
    assert cfg.for_bundle(plain).split == (1, 2)
    assert ServerConfig(bundle="b", workers=4).for_bundle(measured).split == (4, 2)
    assert ServerConfig(bundle="b", threads=3).for_bundle(measured).split == (1, 3)
    assert ServerConfig(bundle="b", runtime="paddle").for_bundle(measured).split == (1, 2)
    (measured / "runtime.json").write_text('{"chosen": {}, "layout": {"workers": "many"}}')
    with pytest.raises(VslimError, match="repackage the bundle"):
        cfg.for_bundle(measured)
