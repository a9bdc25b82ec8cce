"""Shared fixtures: expensive artefacts are built once per test session.

The synthetic data set, the trained small PP-TSM, its FP32 export and INT8 twins,
and a random-init PP-TSM R50 are session-scoped: every slow test uses the same
ones, so the suite trains exactly once.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("VSLIM_PROGRESS", "0")

import vslim  # noqa: E402,F401  (imports zlib before paddle)

REPO = Path(__file__).resolve().parents[1]
SMALL_EPOCHS = 10


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys):
    """Run ``vslim`` in-process (the real argument parsing and error handling)."""
    from vslim.cli.main import main

    def run(*argv) -> CliResult:
        capsys.readouterr()
        code = main([str(a) for a in argv])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def run_script(name: str, *argv, timeout: float = 600) -> CliResult:
    """Run an installed console script in a subprocess, as a user would."""
    exe = Path(sys.executable).parent / name
    proc = subprocess.run(
        [str(exe), *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "VSLIM_PROGRESS": "0"},
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture(scope="session")
def synth_data(tmp_path_factory) -> Path:
    from vslim.data.synth import generate

    return generate(tmp_path_factory.mktemp("data") / "synth")


@pytest.fixture(scope="session")
def trained_small(synth_data, tmp_path_factory):
    """The small PP-TSM trained once per session.

    For local iteration only, VSLIM_TEST_CACHE=DIR keeps the trained weights
    between sessions (CI never sets it, so CI always trains).
    """
    import json

    from vslim.config import ListConfig, TrainConfig
    from vslim.train import TrainResult, train

    cache = os.environ.get("VSLIM_TEST_CACHE")
    out = Path(cache) / "small" if cache else tmp_path_factory.mktemp("train") / "small"
    if cache and (out / "train_log.json").is_file():
        meta = json.loads((out / "vslim.json").read_text())
        return TrainResult(out, meta["training"]["best_val_top1"], json.loads((out / "train_log.json").read_text()))
    return train(
        TrainConfig(
            arch="pptsm_small",
            train=ListConfig(str(synth_data / "train.list")),
            val=ListConfig(str(synth_data / "val.list")),
            output_dir=str(out),
            epochs=SMALL_EPOCHS,
        )
    )


@pytest.fixture(scope="session")
def fp32_small(trained_small, tmp_path_factory) -> Path:
    from vslim.export import export_model

    return export_model(trained_small.output_dir / "model.pdparams", tmp_path_factory.mktemp("fp32") / "small")


def _ptq(fp32, data, out, algo):
    from vslim.compress.config import PTQConfig
    from vslim.compress.ptq import quantize
    from vslim.config import ListConfig

    return quantize(
        PTQConfig(
            model_dir=str(fp32),
            output_dir=str(out),
            calib=ListConfig(str(data / "calib.list")),
            val=ListConfig(str(data / "val.list")),
            algo=algo,
        )
    )


@pytest.fixture(scope="session")
def int8_small_avg(fp32_small, synth_data, tmp_path_factory):
    return _ptq(fp32_small, synth_data, tmp_path_factory.mktemp("int8") / "avg", "avg")


@pytest.fixture(scope="session")
def int8_small_hist(fp32_small, synth_data, tmp_path_factory):
    return _ptq(fp32_small, synth_data, tmp_path_factory.mktemp("int8") / "hist", "hist")


@pytest.fixture(scope="session")
def r50_fp32(tmp_path_factory) -> Path:
    from vslim.export import export_model

    return export_model(None, tmp_path_factory.mktemp("r50") / "fp32", arch="pptsm_r50", num_classes=400)


@pytest.fixture(scope="session")
def r50_int8(r50_fp32, synth_data, tmp_path_factory):
    from vslim.compress.config import PTQConfig
    from vslim.compress.ptq import quantize
    from vslim.config import ListConfig

    return quantize(
        PTQConfig(
            model_dir=str(r50_fp32),
            output_dir=str(tmp_path_factory.mktemp("r50") / "int8"),
            calib=ListConfig(str(synth_data / "calib.list")),
            algo="avg",
            batch_size=2,
            batch_nums=2,
            measure_latency=False,
        )
    )


@pytest.fixture(scope="session")
def bundle_fp32(fp32_small, tmp_path_factory):
    from vslim.serving.bundle import package_serving
    from vslim.serving.config import ServingPackageConfig

    return package_serving(
        ServingPackageConfig(str(fp32_small), str(tmp_path_factory.mktemp("bundles") / "fp32"), name="small")
    )


@pytest.fixture(scope="session")
def bundle_int8(int8_small_avg, tmp_path_factory):
    from vslim.serving.bundle import package_serving
    from vslim.serving.config import ServingPackageConfig

    return package_serving(
        ServingPackageConfig(
            str(int8_small_avg.output_dir), str(tmp_path_factory.mktemp("bundles") / "int8"), name="small_int8"
        )
    )


@pytest.fixture(scope="session")
def toolchain():
    """The vslim Lite toolchain; built here if this machine has none yet (CI builds it in .ci/run)."""
    from vslim.lite.errors import LiteError
    from vslim.lite.toolchain import find_toolchain, setup_toolchain

    try:
        return find_toolchain()
    except LiteError:
        return setup_toolchain(say=lambda _: None)


@pytest.fixture(scope="session")
def cpp_client(tmp_path_factory):
    """Configure and build out of tree, as CI does; our own sources must compile without warnings."""
    build = tmp_path_factory.mktemp("cpp") / "build"
    proc = subprocess.run(
        [str(REPO / "cpp_client" / "build.sh"), str(build)],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "VSLIM_WERROR": "ON"},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    log = proc.stdout + proc.stderr
    assert "warning:" not in log, log
    binary = build / "vslim_cpp_client"
    assert binary.is_file()
    return binary


# --------------------------------------------------------------------------- security material


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory):
    """A throwaway self-signed certificate for 127.0.0.1."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return folder / "cert.pem", folder / "key.pem"


@pytest.fixture(scope="session")
def token_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("auth") / "token"
    path.write_text("s3cret-token-0123456789\n")
    return path


# --------------------------------------------------------------------------- servers shared by the serving tests


@pytest.fixture(scope="session")
def server_fp32(bundle_fp32):
    """A real vslim-serve of the FP32 bundle (16 MiB body limit, for the size-limit cases)."""
    from servers import ServerProcess

    server = ServerProcess(bundle_fp32.server, "--max-body-mb", 16)
    yield server
    assert server.stop() == 0, server.log()


@pytest.fixture(scope="session")
def server_int8(bundle_int8):
    from servers import ServerProcess

    server = ServerProcess(bundle_int8.server)
    yield server
    assert server.stop() == 0, server.log()


@pytest.fixture(scope="session")
def val_clips(synth_data, bundle_fp32):
    """Six validation clips, preprocessed as the bundle says: (clips, labels, video paths)."""
    from vslim.config import ListConfig
    from vslim.data import ClipPipeline, read_list
    from vslim.data.loader import iter_batches
    from vslim.serving.client import ClientConfig

    meta = ClientConfig.load(bundle_fp32.client).meta
    entries = read_list(ListConfig(str(synth_data / "val.list")))[:6]
    clips, labels = next(iter_batches(entries, ClipPipeline(meta.preprocess), 6))
    return clips, labels, [e.path for e in entries]
