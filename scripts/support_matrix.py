#!/usr/bin/env python
"""Run every vslim step over a small model of each PaddleVideo family and write the support matrix.

The models are the test suite's stand-ins (tests/family_models.py: each family's input names,
layouts and key ops), exported as PaddleVideo exports them and imported with a PaddleVideo-style
config. Each cell is what the real command did: ✔, or ✘ with the first words of its message.

    .venv/bin/python scripts/support_matrix.py [--out docs/models.md] [--work DIR]

It rewrites the part of docs/models.md between the two ``support-matrix`` markers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
START, END = "<!-- support-matrix:start -->", "<!-- support-matrix:end -->"


SCRATCH = [""]  # the work folder, left out of the messages quoted in the table


def run(*argv: str, env=None) -> tuple[int, str, str]:
    exe = Path(sys.executable).parent / "vslim"
    proc = subprocess.run([str(exe), *map(str, argv)], capture_output=True, text=True, env=env, timeout=1800)
    return proc.returncode, proc.stdout, proc.stderr.replace(SCRATCH[0] + "/", "")


def cell(code: int, err: str, ok: str = "✔") -> str:
    if code == 0:
        return ok
    line = next((ln for ln in err.splitlines() if "error:" in ln), err.strip().splitlines()[-1] if err.strip() else "")
    reason = line.split("error:", 1)[-1].strip()
    words = reason.split(". ")[0].split("; ")[0]
    return "✘ " + (words[:110] + "…" if len(words) > 110 else words)


def main() -> int:
    import family_models as fm
    import numpy as np
    import yaml
    from test_paddlevideo_models import BUILD, CONFIGS

    from vslim.data.synth import _write_video, generate, render_clip

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(REPO / "docs" / "models.md"))
    ap.add_argument("--work", help="scratch folder (default: a temporary one)")
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="vslim-matrix-")).resolve()
    SCRATCH[0] = str(work)
    env = {**os.environ, "VSLIM_HOME": str(work / "home"), "VSLIM_PROGRESS": "0"}
    # a fresh home, so every model is probed as on a new host; the Lite toolchain `vslim lite setup` built is reused
    toolchain = Path(os.environ.get("VSLIM_HOME", Path.home() / ".cache" / "vslim")) / "lite-toolchain"
    (work / "home").mkdir(parents=True, exist_ok=True)
    if toolchain.is_dir() and not (work / "home" / "lite-toolchain").exists():
        (work / "home" / "lite-toolchain").symlink_to(toolchain)
    data = generate(work / "synth")
    video = work / "clip.mp4"
    _write_video(video, render_clip(3, np.random.default_rng(0), 90, 48, 64), 30)

    rows = []
    for family, cfg in CONFIGS.items():
        folder = fm.build(family, work / family, name=cfg["model_name"], **BUILD[family])
        config = work / f"{family}.yaml"
        config.write_text(yaml.safe_dump(cfg))
        row = {"family": f"{cfg['model_name']} ({cfg['INFERENCE']['name']})"}
        code, out, err = run("info", "--model-dir", folder, env=env)
        unknown = "unknown:" in out
        row["without config"] = "refused (ambiguous layout)" if unknown else "assumed PP-TSM defaults (said)"
        code, _, err = run("import", "--model-dir", folder, "--config", config, env=env)
        row["import"] = cell(code, err)
        code, out, err = run("predict", "--model-dir", folder, "--video", video, "--json", env=env)
        row["predict"] = cell(code, err)
        q = work / f"{family}-int8"
        code, _, err = run(
            "compress",
            "ptq",
            "--model-dir",
            folder,
            "--calib-list",
            data / "calib.list",
            "--val-list",
            data / "val.list",
            "--out",
            q,
            "--algo",
            "auto",
            env=env,
        )
        row["ptq (auto)"] = cell(code, err)
        if code == 0:
            code, _, err = run(
                "package",
                "--target",
                "serving",
                "--model-dir",
                q,
                "--out",
                work / f"{family}-int8-b",
                "--name",
                f"{family}_int8",
                env=env,
            )
            row["INT8 serving"] = cell(code, err)
        else:
            row["INT8 serving"] = "–"
        b = work / f"{family}-bundle"
        code, _, err = run(
            "package", "--target", "serving", "--model-dir", folder, "--out", b, "--name", family, env=env
        )
        if code == 0:
            record = json.loads((b / f"{family}_serving_server" / "runtime.json").read_text())
            ok = [f"{r['runtime']} {r['precision']}" for r in record["table"] if r["status"] == "ok"]
            probed = record.get("paddle_settings", {}).get("name", "default")
            row["serving (runtimes that pass)"] = (
                ", ".join(ok) + f"; Paddle settings: {probed}" + f"; chosen {record['chosen']['runtime']}"
            )
        else:
            row["serving (runtimes that pass)"] = cell(code, err)
        code, _, err = run(
            "package", "--target", "onnx", "--model-dir", folder, "--out", work / f"{family}-onnx", env=env
        )
        row["onnx"] = cell(code, err)
        code, _, err = run(
            "package",
            "--target",
            "lite",
            "--model-dir",
            folder,
            "--out",
            work / f"{family}-lite",
            "--valid-targets",
            "arm",
            env=env,
        )
        row["lite (arm)"] = cell(code, err)
        code, _, err = run(
            "bench",
            "e2e",
            "--model",
            folder,
            "--video",
            video,
            "--iterations",
            "3",
            "--out",
            work / f"{family}-e2e",
            env=env,
        )
        row["bench e2e"] = cell(code, err)
        code, _, err = run(
            "bench",
            "runtime",
            "--model",
            f"fp32={folder}",
            "--batch-sizes",
            "1",
            "--iterations",
            "3",
            "--warmup",
            "1",
            "--out",
            work / f"{family}-rt",
            env=env,
        )
        row["bench runtime"] = cell(code, err)
        rows.append(row)
        print(json.dumps(row, ensure_ascii=False), flush=True)

    columns = list(rows[0])
    table = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    table += ["| " + " | ".join(r[c].replace("|", "/") for c in columns) + " |" for r in rows]
    from vslim.benchmarks.environment import cpu_info

    cpu = cpu_info()
    flags = ", ".join(f for f, on in cpu["flags"].items() if on)
    block = "\n".join(
        [
            START,
            f"Generated by `scripts/support_matrix.py` on {cpu.get('model', 'this host')} ({flags}).",
            "",
            *table,
            END,
        ]
    )
    doc = Path(args.out)
    text = doc.read_text() if doc.is_file() else f"{START}\n{END}\n"
    head, rest = text.split(START, 1)
    doc.write_text(head + block + rest.split(END, 1)[1])
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
