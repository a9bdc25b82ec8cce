"""The README's main job: ``vslim demo``, on the session's artefacts (so the suite trains once)."""

import shutil

import pytest

pytestmark = pytest.mark.slow


def test_demo_reuses_finished_steps_then_serves_the_int8_model(
    tmp_path, synth_data, trained_small, fp32_small, int8_small_avg, cli, toolchain
):
    work = tmp_path / "demo"
    for src, name in (
        (synth_data, "data"),
        (trained_small.output_dir, "train"),
        (fp32_small, "fp32"),
        (int8_small_avg.output_dir, "int8"),
    ):
        shutil.copytree(src, work / name)
    r = cli("demo", "--workdir", work)
    assert r.code == 0, r.err
    assert r.err.count("reusing") == 4 and "[6/7] package the INT8 model" in r.err
    assert (work / "serving" / "vslim_manifest.json").is_file()
    out = r.out
    assert out.count(f"Current video file: {work / 'data' / 'demo.mp4'}") == 2
    assert "\ttop-1 label: move_right" in out
    served = [line for line in out.splitlines() if "top-1 move_right" in line]
    assert [line.split()[0] for line in served] == [
        "grpc",
        "http",
        "http-proto",
        "v2-grpc",
        "v2-http",
        "v2",
        "video",
        "video",
    ]
    assert "| INT8 (" in out and "Weights" in out
    for name in ("fp32", "int8"):
        assert (work / "lite" / name / f"pptsm_small_{name}_arm.nb").is_file()
    assert "int8: pptsm_small_int8_arm.nb" in out and "temporal_shift: 4 rewritten" in out
