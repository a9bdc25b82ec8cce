"""Paddle Serving bundles: what ``paddle_serving_client.convert`` writes, plus a manifest.

``OUT/NAME_serving_server/``: the model files, ``serving_server_conf.prototxt``
(text) and its binary ``.stream`` twin; ``OUT/NAME_serving_client/``: the client
configs. The fetch alias is ``outputs``, the name PaddleVideo's serving code
expects (its docs have users edit it by hand). ``OUT/vslim_manifest.json``
records the sha256 of every file, so a server refuses a bundle changed after
packaging, and the model's precision, preprocessing and labels for clients.
"""

from __future__ import annotations

import datetime as _dt
import json
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, cast

from google.protobuf import text_format

from vslim import __version__
from vslim.config import to_dict
from vslim.fsio import atomic_output_dir, sha256_of, write_json
from vslim.inference import inspect_model
from vslim.inference.model_info import ModelInfo
from vslim.inference.selection import CONVERTED, RECORD, measure
from vslim.model_meta import META_FILE, ModelMeta

from .config import ServingPackageConfig
from .errors import BundleError
from .protocols.paddle_serving.types import code_of, config_pb2, signature_of
from .signature import Signature

if TYPE_CHECKING:
    import numpy as np

SERVER_SUFFIX = "_serving_server"
CLIENT_SUFFIX = "_serving_client"
SERVER_CONF = "serving_server_conf.prototxt"
CLIENT_CONF = "serving_client_conf.prototxt"
MANIFEST = "vslim_manifest.json"
FETCH_ALIAS = "outputs"


@dataclass(frozen=True)
class BundlePaths:
    root: Path
    server: Path
    client: Path
    manifest: Path


def model_config(info: ModelInfo) -> Any:  # a config_pb2.GeneralModelConfig (generated: no static type)
    """The ``GeneralModelConfig`` of a model: shapes keep only fixed dims (no batch), as Paddle Serving does."""
    conf = config_pb2.GeneralModelConfig()
    for spec in info.inputs:
        var = conf.feed_var.add()
        var.name = var.alias_name = spec.name
        var.is_lod_tensor = False
        var.feed_type = code_of(spec.dtype)
        var.shape.extend(d for d in spec.shape if d >= 0)
    for i, spec in enumerate(info.outputs):
        var = conf.fetch_var.add()
        var.name = spec.name
        var.alias_name = FETCH_ALIAS if i == 0 else spec.name
        var.is_lod_tensor = False
        var.fetch_type = code_of(spec.dtype)
        var.shape.extend(d for d in spec.shape if d >= 0)
    return conf


def write_config(folder: Path, filename: str, conf) -> None:
    (folder / filename).write_text(text_format.MessageToString(conf), encoding="utf-8")
    stream = filename.replace(".prototxt", ".stream.prototxt")
    (folder / stream).write_bytes(conf.SerializeToString())


def package_serving(cfg: ServingPackageConfig, say=lambda _: None) -> BundlePaths:
    """Write a Paddle Serving bundle of the inference model in ``cfg.model_dir`` to ``cfg.output_dir``.

    A ``runtime`` other than ``paddle`` converts the model for it into the bundle and
    records the choice (``runtime.json``); ``auto`` measures every runtime and
    precision on this host first and records the fastest that computes the model right.
    """
    cfg.validate()
    model_dir, out, name = cfg.model_dir, cfg.output_dir, cfg.name
    info = inspect_model(model_dir, paddlevideo_config=cfg.paddlevideo_config)
    name = name or info.meta.arch or Path(model_dir).resolve().name
    if not name.replace("_", "").replace("-", "").isalnum():
        raise BundleError(f"bundle name {name!r} may hold only letters, digits, '_' and '-'")
    conf = model_config(info)
    with atomic_output_dir(out, overwrite=cfg.overwrite) as tmp:
        server, client = tmp / f"{name}{SERVER_SUFFIX}", tmp / f"{name}{CLIENT_SUFFIX}"
        server.mkdir()
        client.mkdir()
        shutil.copy2(info.model_file, server / info.model_file.name)
        shutil.copy2(info.params_file, server / info.params_file.name)
        meta = info.meta.derive(
            model_file=info.model_file.name, params_file=info.params_file.name, precision=info.precision
        )
        for folder in (server, client):
            meta.save(folder)
        write_config(server, SERVER_CONF, conf)
        write_config(client, CLIENT_CONF, conf)
        if cfg.runtime != "paddle":
            write_json(server / RECORD, _runtime_record(info, server, cfg, say))
        elif (settings := _probed_settings(info, cfg, say)) is not None:
            write_json(
                server / RECORD,
                {"chosen": {"runtime": "paddle", "precision": info.precision}, "paddle_settings": settings},
            )
        files = {
            p.relative_to(tmp).as_posix(): {"sha256": sha256_of(p), "bytes": p.stat().st_size}
            for p in sorted(tmp.rglob("*"))
            if p.is_file()
        }
        write_json(
            tmp / MANIFEST,
            {
                "format": "vslim-serving-bundle/1",
                "name": name,
                "vslim_version": __version__,
                "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                "precision": info.precision,
                "source_model": str(Path(model_dir).resolve()),
                "inputs": [{"name": s.name, "shape": list(s.shape), "dtype": s.dtype.name} for s in info.inputs],
                "outputs": [
                    {"name": s.name, "alias": var.alias_name, "shape": list(s.shape), "dtype": s.dtype.name}
                    for s, var in zip(info.outputs, conf.fetch_var)
                ],
                "preprocess": to_dict(meta.preprocess),
                "labels": meta.labels,
                "files": files,
            },
        )
    root = Path(out)
    return BundlePaths(root, root / f"{name}{SERVER_SUFFIX}", root / f"{name}{CLIENT_SUFFIX}", root / MANIFEST)


def _probed_settings(info, cfg: ServingPackageConfig, say) -> dict | None:
    """For a model vslim has not seen: the Paddle settings that load and run it here, found in a child process."""
    from vslim.inference.probe import needs_probe, probe, unusable

    if not needs_probe(info.meta):
        return None
    result = probe(info.model_dir, info.model_file, info.params_file, threads=cfg.threads, say=say)
    if result.chosen is None:
        raise unusable(result, info.model_dir)
    return result.chosen


def _runtime_record(info, server: Path, cfg: ServingPackageConfig, say) -> dict:
    from vslim.inference.runtimes import check_precision
    from vslim.inference.selection import clips_from_list, guard_from_list

    calib = None
    if cfg.calib_list:
        # a ClipStore: measure() reads it as the array it stands for (len, slices), though annotated ndarray
        clips = cast("np.ndarray", clips_from_list(info, cfg.calib_list, 32, "--calib-list"))
        calib = (clips, cfg.calib_list)
    only = None
    if cfg.runtime != "auto":
        only = (cfg.runtime, check_precision(cfg.runtime, cfg.precision, info, own_int8=calib is not None))
    guard = guard_from_list(info, cfg.val_list, cfg.threads) if cfg.val_list else None
    return measure(
        info.model_dir, info, server / CONVERTED, threads=cfg.threads, say=say, only=only, guard=guard, calib=calib
    )


# --------------------------------------------------------------------------- reading


def read_signature(folder: Path | str, filename: str) -> Signature:
    """The feed/fetch signature a bundle's config file (client or server half) declares."""
    return signature_of(read_config(folder, filename))


def read_config(folder: Path | str, filename: str):
    """Parse a bundle config (text form, else the binary ``.stream`` twin) into ``GeneralModelConfig``."""
    folder = Path(folder)
    text, stream = folder / filename, folder / filename.replace(".prototxt", ".stream.prototxt")
    conf = config_pb2.GeneralModelConfig()
    try:
        if text.is_file():
            text_format.Parse(text.read_text(encoding="utf-8"), conf)
        elif stream.is_file():
            conf.ParseFromString(stream.read_bytes())
        else:
            raise BundleError(f"bundle folder {folder} is incomplete: it has no {filename}")
    except (text_format.ParseError, UnicodeDecodeError) as exc:
        raise BundleError(f"{text} is not a valid GeneralModelConfig: {exc}") from exc
    except Exception as exc:  # DecodeError of the binary form
        if isinstance(exc, BundleError):
            raise
        raise BundleError(f"{stream} is not a valid GeneralModelConfig: {exc}") from exc
    if not conf.feed_var or not conf.fetch_var:
        raise BundleError(f"{folder / filename} declares no feed_var or no fetch_var")
    return conf


def _safe_member(root: Path, rel: str) -> Path:
    """A manifest path inside ``root``; absolute paths and ``..`` are refused."""
    pure = PurePosixPath(rel)
    if pure.is_absolute() or ".." in pure.parts or not pure.parts:
        raise BundleError(f"manifest lists {rel!r}, a path outside the bundle; refusing it")
    return root / Path(*pure.parts)


def find_manifest(server_dir: Path) -> Path | None:
    for candidate in (server_dir.parent / MANIFEST, server_dir / MANIFEST):
        if candidate.is_file():
            return candidate
    return None


def verify_bundle(server_dir: Path | str) -> dict | None:
    """Check every file the manifest lists for ``server_dir``; returns the manifest (None if absent)."""
    server_dir = Path(server_dir)
    path = find_manifest(server_dir)
    if path is None:
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        files = manifest["files"]
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise BundleError(f"manifest {path} is unreadable ({exc}); repackage the model") from exc
    root = path.parent
    if not isinstance(files, dict):
        raise BundleError(f"manifest {path} has no file table; repackage the model")
    for rel in files:  # one escaping entry means the manifest was tampered with, even if it is not ours
        _safe_member(root, rel)
    prefix = "" if root == server_dir else server_dir.name + "/"
    listed = {rel: entry for rel, entry in files.items() if rel.startswith(prefix)}
    if not listed:
        raise BundleError(f"manifest {path} lists no files of {server_dir.name}; repackage the model")
    for rel, entry in sorted(listed.items()):
        file = _safe_member(root, rel)
        if not file.is_file():
            raise BundleError(f"bundle is incomplete: {rel} is listed in {path.name} but missing; repackage it")
        if not isinstance(entry, dict) or sha256_of(file) != entry.get("sha256"):
            raise BundleError(
                f"bundle file {rel} changed since packaging (sha256 mismatch with {path.name}); "
                "refusing to serve it — repackage the model"
            )
    return manifest


@dataclass
class ServingBundle:
    """A server folder ready to serve: its configs, model files and metadata."""

    server_dir: Path
    config: Any  # config_pb2.GeneralModelConfig, generated at install time: no static type
    info: ModelInfo
    manifest: dict | None

    @property
    def meta(self) -> ModelMeta:
        return self.info.meta

    @property
    def name(self) -> str:
        """The model's name on every protocol: the folder name without ``_serving_server``."""
        return self.server_dir.name.removesuffix(SERVER_SUFFIX)

    @property
    def signature(self) -> Signature:
        return signature_of(self.config)


PACKAGE_HINT = "`vslim-package --target serving --model-dir MODEL --out OUT`, then serve OUT/NAME_serving_server"


def _has_server_conf(folder: Path) -> bool:
    return (folder / SERVER_CONF).is_file() or (folder / SERVER_CONF.replace(".prototxt", ".stream.prototxt")).is_file()


def _is_model_folder(folder: Path) -> bool:
    return any(folder.glob("*.pdmodel")) or (folder / META_FILE).is_file()


def _model_folder_advice(folder: Path) -> str:
    """The two commands that turn a model folder into something vslim-serve takes, with real paths."""
    try:
        name = json.loads((folder / META_FILE).read_text(encoding="utf-8")).get("arch") or ""
    except (OSError, ValueError, AttributeError):
        name = ""
    name = name or folder.resolve().name
    out = (
        folder.with_name(folder.name + "-serving")
        if folder.name not in ("", ".", "..")
        else folder.resolve().with_name(folder.resolve().name + "-serving")
    )
    return (
        f"package it first: `vslim-package --target serving --model-dir {folder} --out {out}`, then "
        f"`vslim-serve --bundle {out / (name + SERVER_SUFFIX)}`"
    )


def _found_bundles(folder: Path) -> list[Path]:
    """Server halves one or two levels down (an OUT folder of vslim-package, or a folder of them)."""
    return [
        d
        for pattern in (f"*{SERVER_SUFFIX}", f"*/*{SERVER_SUFFIX}")
        for d in sorted(folder.glob(pattern))
        if d.is_dir()
    ]


def diagnose_bundle_path(path: Path | str) -> str | None:
    """Why ``path`` is not a bundle's server folder, said with the command that fixes it; None if it may be one.

    People pass what they have at hand: the exported model folder, the folder
    vslim-package wrote (which holds the server and the client half), the client
    half, or a file in one of them. Each gets its own answer instead of "no
    serving_server_conf.prototxt".
    """
    path = Path(path)
    if not path.exists():
        twin = path.with_name(path.name + SERVER_SUFFIX) if path.name else None
        if twin is not None and twin.is_dir():
            return f"bundle folder {path} does not exist; did you mean --bundle {twin}?"
        return f"bundle folder {path} does not exist; make one with {PACKAGE_HINT}"
    if path.is_file():
        folder = path.parent
        if _has_server_conf(folder):
            return f"{path} is a file of a bundle; give its folder: --bundle {folder}"
        about_folder = diagnose_bundle_path(folder)
        if about_folder and SERVER_CONF not in about_folder:  # the folder is something we can name
            return f"{path} is a file, not a bundle folder; and its folder: {about_folder}"
        return f"{path} is a file; --bundle takes the NAME_serving_server folder made by {PACKAGE_HINT}"
    if not path.is_dir():
        return f"{path} is neither a file nor a folder; --bundle takes a NAME_serving_server folder"
    if _has_server_conf(path) or path.name.endswith(SERVER_SUFFIX):
        return None  # a server half, maybe damaged: read_config and the manifest say what is wrong with it
    if (path / CLIENT_CONF).is_file() or path.name.endswith(CLIENT_SUFFIX):
        server = path.with_name(path.name.removesuffix(CLIENT_SUFFIX) + SERVER_SUFFIX)
        where = f"--bundle {server}" if server.is_dir() else f"the NAME{SERVER_SUFFIX} folder beside it"
        return (
            f"{path} is the client half of a bundle (its configs are for vslim-client); serve the server half: {where}"
        )
    bundles = _found_bundles(path)
    if bundles:
        shown = ", ".join(str(b) for b in bundles[:6]) + (f" and {len(bundles) - 6} more" if len(bundles) > 6 else "")
        if len(bundles) == 1:
            return f"{path} holds a serving bundle but is not its server half; serve it with --bundle {bundles[0]}"
        return f"{path} holds {len(bundles)} serving bundles; give one of them as --bundle: {shown}"
    if _is_model_folder(path):
        what = ", ".join(sorted(p.name for p in path.iterdir() if p.suffix in (".pdmodel", ".json")))
        return f"{path} is a model folder ({what}), not a serving bundle; {_model_folder_advice(path)}"
    if any(path.glob("*.pdparams")):
        return (
            f"{path} holds training weights (.pdparams), not a serving bundle; export an inference model "
            f"(`vslim export --weights {next(iter(sorted(path.glob('*.pdparams'))))} --out MODEL`), then "
            f"package it with {PACKAGE_HINT}"
        )
    return (
        f"{path} is not a serving bundle: it has no {SERVER_CONF}; give the NAME_serving_server folder "
        f"made by {PACKAGE_HINT}"
    )


def load_bundle(server_dir: Path | str, verify: bool = True) -> ServingBundle:
    server_dir = Path(server_dir)
    problem = diagnose_bundle_path(server_dir)
    if problem:
        raise BundleError(problem)
    manifest = verify_bundle(server_dir) if verify else None
    conf = read_config(server_dir, SERVER_CONF)
    info = inspect_model(server_dir)
    declared = {v.name for v in conf.feed_var}
    actual = {s.name for s in info.inputs}
    if declared != actual:
        raise BundleError(f"{server_dir / SERVER_CONF} feeds {sorted(declared)} but the model takes {sorted(actual)}")
    return ServingBundle(server_dir, conf, info, manifest)
