"""One way to package a model for any target: ``package(target, options)``, driven by a table.

Each target is a feature's own function with one signature, ``run(cfg, say)``, where
``cfg`` is the target's config dataclass (a :class:`~vslim.config.PackageConfig`: a
model folder in, one output folder out). Adding a target is one row in
:data:`TARGETS`; the CLI (``vslim-package --target T``) reads its choices and help
from the same table, so the two cannot drift apart.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import from_mapping
from .errors import ConfigError

Say = Callable[[str], None]


@dataclass(frozen=True)
class Packaged:
    """What a packaging run produced, in a form every target shares."""

    target: str
    path: Path  # what the next command takes: the server folder, the .nb folder, model.onnx
    report: dict
    summary: list[str]  # lines for a person; the report holds every figure


@dataclass(frozen=True)
class Target:
    """One row of the table: what the target makes, its config class, and the function that makes it."""

    help: str
    config_class: str  # "module:Class", imported only when used: ``vslim --help`` must not load every feature
    run: Callable[[Any, Say], Packaged]

    @property
    def config(self) -> type[Any]:
        module, name = self.config_class.split(":")
        return getattr(importlib.import_module(module), name)


def _serving(cfg, say: Say) -> Packaged:
    import json

    from .inference.selection import table_markdown
    from .serving.bundle import package_serving

    if cfg.runtime != "paddle":
        say(
            f"measuring CPU runtimes for {cfg.model_dir} ({cfg.threads} threads, batch 1)"
            if cfg.runtime == "auto"
            else f"converting for {cfg.runtime}"
        )
    paths = package_serving(cfg, say)
    summary = [f"wrote {paths.server.name}/ and {paths.client.name}/ to {paths.root}"]
    record = paths.server / "runtime.json"
    report = json.loads(paths.manifest.read_text())
    if record.is_file():
        chosen = json.loads(record.read_text())
        report = {**report, "runtime": chosen}
        if "table" in chosen:
            summary.append(table_markdown(chosen).rstrip())
        if chosen.get("paddle_settings"):
            summary.append(
                f"Paddle Inference settings for this host (probed in a child process): "
                f"{chosen['paddle_settings']['name']}"
            )
    return Packaged("serving", paths.server, report, summary)


def _lite(cfg, say: Say) -> Packaged:
    from .lite.package import REPORT_MD, package_lite

    report = package_lite(cfg, say=say)
    out = Path(cfg.output_dir)
    return Packaged("lite", out, report, [(out / REPORT_MD).read_text().rstrip()])


def _onnx(cfg, say: Say) -> Packaged:
    from .onnx_export import export_onnx

    report = export_onnx(cfg, say)
    target = Path(cfg.output_dir) / "model.onnx"
    check = report["check_vs_paddle"]
    shifts = report.get("graph_rewrites", {}).get("temporal_shift", 0)
    lines = [
        f"wrote {target} (opset {report['opset']}); vs Paddle: max abs diff {check['max_abs_diff']:.2e}, "
        f"cosine {check['cosine_min']:.6f}"
    ]
    if shifts:
        lines.append(
            f"temporal shifts rewritten as 4-D ops (identical outputs, no layout changes in OpenVINO): {shifts}"
        )
    return Packaged("onnx", target, report, lines)


TARGETS: dict[str, Target] = {
    "serving": Target(
        "a Paddle Serving bundle (NAME_serving_server/ + NAME_serving_client/ + a checksummed "
        "manifest) for vslim-serve, with the fastest CPU runtime measured and recorded",
        "vslim.serving.config:ServingPackageConfig",
        _serving,
    ),
    "lite": Target(
        "Paddle Lite .nb files for ARM phones (and x86, run against Paddle Inference) through the "
        "official optimizer, with a report",
        "vslim.lite.config:LiteConfig",
        _lite,
    ),
    "onnx": Target(
        "model.onnx (paddle2onnx, opset 13), checked against Paddle Inference", "vslim.onnx_export:OnnxConfig", _onnx
    ),
}


def package(target: str, options: Mapping[str, Any], say: Say = lambda _: None) -> Packaged:
    """Package a model for ``target``; ``options`` are the target config's fields, unknown ones refused by name.

    ``options`` must hold ``model_dir`` and ``output_dir``; nested fields (a Lite
    ``val`` list) may be given as mappings. Nothing is written when any check fails.
    """
    if target not in TARGETS:
        raise ConfigError(f"unknown packaging target {target!r}; choose one of {', '.join(TARGETS)}")
    spec = TARGETS[target]
    cfg = from_mapping(spec.config, options, f"--target {target}")
    return spec.run(cfg.validate(), say)
