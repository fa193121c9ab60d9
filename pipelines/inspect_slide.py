"""`wsi-seg inspect`: what a slide is, how it decodes, and which tissue regions it holds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["inspect_slide", "format_report"]


def inspect_slide(
    path: str | Path, *, backend: str = "auto", mpp: float | None = None
) -> dict[str, Any]:
    """Open a slide, decode one tile of its coarsest level, find its tissue regions.

    Raises a :class:`~wsi_downsample.errors.WsiSegError` subclass for missing, unopenable
    or undecodable files.
    """
    from wsi_downsample.slides import (
        check_decodable,
        describe_slide,
        find_tissue_regions,
        open_slide,
    )

    with open_slide(path, backend=backend, mpp=mpp) as slide:
        check_decodable(slide)
        report = describe_slide(slide)
        regions = find_tissue_regions(slide)
    report["regions"] = [
        {"index": r.index, "x0": r.x0, "y0": r.y0, "x1": r.x1, "y1": r.y1, "area": r.area}
        for r in regions
    ]
    return report


def format_report(report: dict[str, Any]) -> str:
    """Human-readable text for :func:`inspect_slide`'s report."""
    mpp = report.get("mpp")
    lines = [
        f"{report['path']}",
        f"  backend {report['backend']}, vendor {report.get('vendor') or 'unknown'}, "
        f"objective {report.get('objective_power') or 'unknown'}, "
        f"mpp {'x'.join(f'{m:g}' for m in mpp) if mpp else 'unknown'}",
    ]
    for level in report["levels"]:
        lines.append(
            f"  level {level['level']}: {level['width']} x {level['height']} (w x h), "
            f"downsample {level['downsample']:g}, tile {level['tile_width']}x{level['tile_height']}"
        )
    if report.get("associated_images"):
        lines.append(f"  associated images: {', '.join(report['associated_images'])}")
    lines.append(f"  tissue regions: {len(report['regions'])}")
    for r in report["regions"]:
        lines.append(
            f"    #{r['index']}: x {r['x0']}..{r['x1']}, y {r['y0']}..{r['y1']} "
            f"({r['x1'] - r['x0']} x {r['y1'] - r['y0']}), tissue {r['area']:.0f} px"
        )
    return "\n".join(lines)
