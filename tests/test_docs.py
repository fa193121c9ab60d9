"""docs/: the API walk-through runs, the CLI reference is current, every page is linked."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), re.S)


def test_api_walkthrough_runs(synthetic_slide, tmp_path: Path) -> None:
    blocks = _python_blocks(DOCS / "api.md")
    assert len(blocks) == 6
    code = "\n".join(blocks)
    assert code.count('"slide.svs"') == 1
    code = code.replace('"slide.svs"', repr(str(synthetic_slide.slide_path)))
    script = tmp_path / "api.py"
    script.write_text("import torch\ntorch.set_num_threads(1)\n" + code, encoding="utf-8")
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    out = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert lines[0] == "(2048, 1536) 3 Mpp(x=0.5, y=0.5)"
    regions = synthetic_slide.regions
    assert len(lines) == 1 + len(regions) + 5
    # find_tissue_regions finds each core the synthetic slide drew, in the same order
    for line, truth in zip(lines[1 : 1 + len(regions)], regions, strict=True):
        index, x0, y0, x1, y1 = map(int, re.findall(r"-?\d+", line)[:5])
        assert index == truth.index
        found, drawn = (x0, y0, x1, y1), (truth.x0, truth.y0, truth.x1, truth.y1)
        # within one pixel of the ~8 um/px tissue mask (16 level-0 px at 0.5 um/px)
        assert max(abs(f - d) for f, d in zip(found, drawn, strict=True)) <= 16
    # dynamic 40x400 keeps the aspect ratio with the short side 40
    assert lines[-5].startswith("(40, ")
    assert lines[-1].endswith(" 1.0")  # the mask read back equals what was written
    assert (tmp_path / "region0.mask.ome.tif").is_file()


def test_cli_reference_is_current() -> None:
    sys.path.insert(0, str(DOCS))
    try:
        import make_cli_reference
    finally:
        sys.path.remove(str(DOCS))
    committed = (DOCS / "cli_reference.md").read_text(encoding="utf-8")
    assert committed == make_cli_reference.render(), "run docs/make_cli_reference.py"


def test_every_page_linked_and_links_resolve() -> None:
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    pages = sorted(p.name for p in DOCS.glob("*.md") if p.name != "index.md")
    expected = ["api.md", "cli.md", "cli_reference.md", "cluster.md", "method.md", "outputs.md"]
    assert pages == expected
    for name in pages:
        assert f"]({name}" in index, name
    for page in DOCS.glob("*.md"):
        text = page.read_text(encoding="utf-8")
        assert "../shared" not in text and "METHOD.md" not in text, page.name
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
            assert (page.parent / target).exists(), f"{page.name} links {target}"
