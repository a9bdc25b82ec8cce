"""The repository stands alone: no file points at a document outside it, and every in-repo pointer resolves.

Notes kept outside the repository (a team notebook, a design note) are not shipped
with it; a comment citing one leaves the next maintainer without the reason. The
facts such comments need live in docs/architecture.md.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEXT_SUFFIXES = {".py", ".md", ".txt", ".cfg", ".toml", ".yaml", ".yml", ".sh", ".cc", ".h", ".proto", ".cmake", ""}
# Built from parts so this file does not match itself.
OUTSIDE = [re.compile(p, re.I) for p in (r"design" + r"\.md", r"design" + r" card", r"\.\./" + r"shared/")]
DOC_PATH = re.compile(r"(?<![\w./-])((?:docs|deploy|scripts|tests|cpp_client)/[\w./-]+\.(?:md|yaml|sh|py|json))")
UPSTREAM = re.compile(r"(PaddleVideo|Paddle Serving|PaddleSlim|Paddle Lite)'s\W*$")  # "PaddleVideo's deploy/..."
MD_LINK = re.compile(r"\]\((?!https?:|mailto:|#)([^)#\s]+)")


def _tracked() -> list[Path]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [
        ROOT / line
        for line in out.splitlines()
        if (ROOT / line).is_file()
        and Path(line).suffix in TEXT_SUFFIXES
        and not line.startswith("docs/benchmarks/")
        and not line.startswith("docs/reliability/")
    ]


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return ""


def test_no_tracked_file_cites_a_document_outside_the_repository():
    hits = []
    for path in _tracked():
        for n, line in enumerate(_read(path).splitlines(), start=1):
            if any(p.search(line) for p in OUTSIDE):
                hits.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()[:100]}")
    assert not hits, "cites a document outside the repository:\n" + "\n".join(hits)


def test_paths_named_in_code_and_docs_exist():
    missing = []
    for path in _tracked():
        text = _read(path)
        for match in DOC_PATH.finditer(text):
            rel = match.group(1).rstrip(".")
            if UPSTREAM.search(text[max(0, match.start() - 40) : match.start()]):
                continue
            if "*" in rel or "{" in rel or not rel.split("/")[-1].split(".")[0]:
                continue
            if not (ROOT / rel).exists():
                missing.append(f"{path.relative_to(ROOT)} -> {rel}")
    assert not missing, "names files that are not in the repository:\n" + "\n".join(sorted(set(missing)))


def test_relative_markdown_links_resolve():
    broken = []
    for path in _tracked():
        if path.suffix != ".md":
            continue
        for match in MD_LINK.finditer(_read(path)):
            target = (path.parent / match.group(1)).resolve()
            if not target.exists():
                broken.append(f"{path.relative_to(ROOT)} -> {match.group(1)}")
    assert not broken, "broken links:\n" + "\n".join(broken)
