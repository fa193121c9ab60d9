"""Manifest CSVs: read, resolve paths, and validate every row before any work starts.

Columns (the README's "Data: manifests and configs"): ``slide_path`` (required),
``mask_path``, ``split`` (train/val/test, default test), ``slide_id`` (default the slide's
stem), ``patient_id``, ``fold``, ``mpp``, ``label_map``. Relative paths resolve against the
CSV's folder.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.config import Config
from wsi_downsample.errors import ManifestError, WsiSegError

__all__ = [
    "ManifestRow",
    "read_manifest",
    "validate_manifest",
    "mask_value_counts",
    "SPLITS",
    "COLUMNS",
]

SPLITS = ("train", "val", "test")
COLUMNS = ("slide_path", "mask_path", "split", "slide_id", "patient_id", "fold", "mpp", "label_map")


@dataclass(frozen=True)
class ManifestRow:
    """One row of a manifest, paths resolved; ``line`` is its 1-based line in the CSV."""

    line: int
    slide_path: Path
    mask_path: Path | None
    split: str
    slide_id: str
    patient_id: str | None = None
    fold: int | None = None
    mpp: float | None = None
    label_map: str | None = None


def read_manifest(
    path: str | Path,
    config: Config,
    *,
    require_masks: bool = False,
    slide_mpp: float | None = None,
    splits: Iterable[str] | None = None,
    check_files: bool = True,
) -> list[ManifestRow]:
    """Parse and validate a manifest; raise one :class:`ManifestError` listing every bad row.

    ``require_masks``: every row needs a mask (training, evaluation, the intrinsic study).
    ``slide_mpp``: the command line's ``--slide-mpp``, used where a row has no ``mpp``.
    ``splits``: keep only these splits (after validation of the whole file).
    ``check_files``: open every slide and mask (frames, mpp) — the default.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"manifest not found: {path}; pass an existing CSV file")
    rows, problems = _parse(path, config)
    if check_files:
        problems += _check_rows(rows, config, require_masks, slide_mpp)
    if not rows and not problems:
        problems.append("no rows; add one line per slide under the header")
    if problems:
        problems.sort(key=_line_number)
        listing = "; ".join(problems)
        raise ManifestError(f"{path}: {len(problems)} problem(s): {listing}")
    keep = set(splits) if splits is not None else set(SPLITS)
    return [r for r in rows if r.split in keep]


def _line_number(problem: str) -> int:
    head = problem.split(":")[0]
    return int(head[5:]) if head.startswith("line ") and head[5:].isdigit() else 0


def validate_manifest(path: str | Path, config: Config, **kwargs: object) -> int:
    """Validate a manifest and return its number of rows (raises on any bad row)."""
    return len(read_manifest(path, config, **kwargs))  # type: ignore[arg-type]


def _decode(path: Path) -> str:
    """The CSV's text: UTF-8 (a BOM, as Excel writes, is dropped) or UTF-16 with a BOM.

    Other encodings (Latin-1, Windows-1252) are refused rather than guessed: a wrong guess
    would turn non-ASCII paths into paths that do not exist.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ManifestError(f"cannot read manifest {path}: {exc.strerror}") from None
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ManifestError(
            f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "save it as UTF-8 (in Excel: Save As > 'CSV UTF-8 (Comma delimited)')"
        ) from None


def _dialect(text: str) -> str:
    """The delimiter: a comma, or ';' / tab when the header has those and no comma (Excel
    in locales with a decimal comma writes ';')."""
    header = text.splitlines()[0] if text.strip() else ""
    if "," not in header:
        for delimiter in (";", "\t"):
            if delimiter in header:
                return delimiter
    return ","


def _parse(path: Path, config: Config) -> tuple[list[ManifestRow], list[str]]:
    text = _decode(path)
    if "\x00" in text:
        raise ManifestError(f"{path}: binary data, not a CSV; give the manifest CSV file")
    with io.StringIO(text, newline="") as handle:
        reader = csv.DictReader(handle, delimiter=_dialect(text))
        header = [h.strip() for h in reader.fieldnames or []]
        if "slide_path" not in header:
            raise ManifestError(
                f"{path}: no 'slide_path' column (found {header}); the header must name the "
                f"columns {list(COLUMNS)}"
            )
        unknown = sorted(set(header) - set(COLUMNS))
        if unknown:
            raise ManifestError(f"{path}: unknown column(s) {unknown}; valid: {list(COLUMNS)}")
        rows, problems = [], []
        for line, raw in enumerate(reader, start=2):
            cells = {k.strip(): (v or "").strip() for k, v in raw.items() if k}
            if not any(cells.values()):
                continue
            try:
                rows.append(_row(line, cells, path.parent, config))
            except ValueError as exc:
                problems.append(f"line {line}: {exc}")
    return rows, problems


def _row(line: int, cells: dict[str, str], base: Path, config: Config) -> ManifestRow:
    if not cells.get("slide_path"):
        raise ValueError("empty slide_path")
    slide = (base / cells["slide_path"]).resolve()
    mask = (base / cells["mask_path"]).resolve() if cells.get("mask_path") else None
    split = cells.get("split") or "test"
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {list(SPLITS)}")
    label_map = cells.get("label_map") or None
    if label_map is not None and label_map not in config.label_maps:
        defined = sorted(config.label_maps)
        raise ValueError(
            f"unknown label map {label_map!r}; the config defines "
            f"{defined if defined else 'none'}: define it under label_maps: in the config "
            "YAML (given with --config)"
        )
    return ManifestRow(
        line=line,
        slide_path=slide,
        mask_path=mask,
        split=split,
        slide_id=cells.get("slide_id") or _stem(slide),
        patient_id=cells.get("patient_id") or None,
        fold=_number(cells.get("fold"), int, "fold"),
        mpp=_number(cells.get("mpp"), float, "mpp"),
        label_map=label_map,
    )


def _number(text: str | None, kind: type, name: str):  # type: ignore[no-untyped-def]
    if not text:
        return None
    try:
        value = kind(text)
    except ValueError:
        raise ValueError(f"{name} {text!r} is not a number") from None
    if kind is float and not value > 0:
        raise ValueError(f"{name} must be > 0, got {text}")
    return value


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".ome.tiff", ".ome.tif"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _check_rows(
    rows: list[ManifestRow], config: Config, require_masks: bool, slide_mpp: float | None
) -> list[str]:
    """Every row's problems, rows checked in parallel threads (decoding releases the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    def check(row: ManifestRow) -> list[str]:
        return [f"line {row.line}: {p}" for p in _check_row(row, config, require_masks, slide_mpp)]

    with ThreadPoolExecutor(max_workers=min(4, max(1, len(rows)))) as pool:
        return [p for found in pool.map(check, rows) for p in found]


def mask_value_counts(mask: Any, level: int = 0) -> np.ndarray:
    """Pixels per label value over one level of a mask, read tile by tile (bounded memory).

    Level 0 by default: lower levels are built by nearest or mode and can drop small
    structures, and with them a stray value.

    Shape: ``-> (256,)`` int64.
    """
    info = mask.levels[level]
    (h, w), (th, tw) = info.shape_hw, info.tile_hw
    counts = np.zeros(256, np.int64)
    for r in range(-(-h // th)):
        for c in range(-(-w // tw)):
            tile = np.asarray(mask.read_tile(level, r, c))
            tile = tile[..., 0] if tile.ndim == 3 else tile
            counts += np.bincount(tile.ravel(), minlength=256)[:256]
    return counts


def _label_problems(row: ManifestRow, mask: Any, config: Config) -> list[str]:
    """Values of the mask that the row's label map does not know."""
    values = set(np.flatnonzero(mask_value_counts(mask)).tolist())
    unknown = sorted(values - config.mapped_values(row.label_map))
    if not unknown:
        return []
    name = f"label map {row.label_map!r}" if row.label_map else "the class table (no label_map)"
    return [
        f"{row.mask_path}: values {unknown} are not in {name}; map them to a class or "
        "'ignore' under label_maps: in the config and name the map in the row's label_map"
    ]


def _check_row(
    row: ManifestRow, config: Config, require_masks: bool, slide_mpp: float | None
) -> list[str]:
    """Open the row's slide (and mask) and return its problems as short sentences."""
    from wsi_downsample.slides import check_decodable, open_mask, open_slide

    problems: list[str] = []
    if require_masks and row.mask_path is None:
        problems.append(f"{row.slide_path.name}: no mask_path (this command needs masks)")
    mpp = row.mpp if row.mpp is not None else slide_mpp
    try:
        with open_slide(row.slide_path, mpp=mpp) as slide:
            check_decodable(slide)
            if slide.mpp is None:
                problems.append(
                    f"{row.slide_path.name}: no mpp in the file; set the row's mpp column or "
                    f"pass --slide-mpp"
                )
            if row.mask_path is not None:
                with open_mask(row.mask_path, slide=slide) as mask:
                    check_decodable(mask)
                    if row.label_map is None or row.label_map in config.label_maps:
                        problems += _label_problems(row, mask, config)
    except WsiSegError as exc:
        problems.append(str(exc))
    return problems
