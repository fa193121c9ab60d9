"""The `wsi-seg` command line: a thin click shell over the pipeline functions.

Every command: options -> config -> one pipeline call. Errors on bad input print one line
(``error: ...``) and exit with status 2; nothing partial is left behind.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from wsi_downsample.errors import WsiSegError

__all__ = ["cli", "main"]

BACKENDS = click.Choice(["auto", "tiffslide", "openslide", "image"])
EXIT_BAD_INPUT = 2


class _Group(click.Group):
    """Turn every WsiSegError into one line on stderr and a non-zero exit."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except WsiSegError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(EXIT_BAD_INPUT)


def _size_hw(text: str) -> tuple[int, int]:
    """Parse ``HxW`` (rows x columns) into ints, or raise click.BadParameter."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        msg = f"{text!r} is not HxW (rows x columns), e.g. 15360x20480"
        raise click.BadParameter(msg) from None
    if h <= 0 or w <= 0:
        raise click.BadParameter(f"{text!r}: both sides must be positive")
    return h, w


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="wsi-seg")
def cli() -> None:
    """wsi-seg: whole-slide segmentation with learned non-uniform downsampling."""


@cli.command()
@click.argument("slide", type=click.Path(path_type=Path))
@click.option("--backend", type=BACKENDS, default="auto", show_default=True)
@click.option(
    "--slide-mpp",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Level-0 microns per pixel, when the file has none.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def inspect(slide: Path, backend: str, slide_mpp: float | None, as_json: bool) -> None:
    """Levels, mpp, vendor and tissue regions of SLIDE; decodes one tile to prove it reads."""
    from pipelines.inspect import format_report, inspect_slide

    report = inspect_slide(slide, backend=backend, mpp=slide_mpp)
    click.echo(json.dumps(report, indent=2) if as_json else format_report(report))


@cli.command()
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--size",
    "size_hw",
    default="15360x20480",
    show_default=True,
    help="Level-0 size HxW (rows x columns).",
)
@click.option("--count", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def synth(out_dir: Path, size_hw: str, count: int, seed: int) -> None:
    """Write COUNT synthetic H&E-like slides, their Gleason masks and a manifest to OUT_DIR."""
    from pipelines.synth import run_synth

    manifest = run_synth(
        out_dir, _size_hw(size_hw), count=count, seed=seed, progress=sys.stderr.isatty()
    )
    click.echo(str(manifest))


@cli.command()
@click.option(
    "--slides",
    "manifest",
    required=True,
    type=click.Path(path_type=Path),
    help="Manifest CSV; every row needs a mask_path.",
)
@click.option("--size", "size_hw", default=None, help="Fixed budget HxW (rows x columns).")
@click.option("--dynamic", default=None, help="Dynamic budget SHORTxLONG (paper: 80x800).")
@click.option(
    "--downsample",
    type=click.FloatRange(min=1),
    default=None,
    help="Budget as a downsample factor per axis.",
)
@click.option(
    "--sampler",
    type=click.Choice(["uniform", "edge"]),
    default=None,
    help="Sampler (default: the config's, uniform).",
)
@click.option(
    "--blur",
    type=click.FloatRange(min=0),
    default=None,
    help="Edge sampler: boundary blur in density cells.",
)
@click.option(
    "--density-fraction",
    type=click.FloatRange(min=0, max=1, min_open=True),
    default=None,
    help="Density map size per axis as a fraction of the budget (default: config, 0.25).",
)
@click.option(
    "--inverse",
    type=click.Choice(["exact", "scatter"]),
    default="exact",
    show_default=True,
    help="exact bilinear inverse, or the paper's scatter + nearest.",
)
@click.option(
    "--source-mpp",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Resolution regions are read at (default: the config's, 0.5).",
)
@click.option(
    "--slide-mpp",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="mpp for slides whose file and manifest row give none.",
)
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the JSON report here (atomically).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the JSON report.")
def intrinsic(as_json: bool, **options: Any) -> None:
    """IoU(Y',Y) of a sampler at a budget over a manifest's masks (the paper's Sec. 2.2)."""
    from pipelines.intrinsic import format_intrinsic, intrinsic_from_options

    report = intrinsic_from_options(**options)
    click.echo(json.dumps(report, indent=2) if as_json else format_intrinsic(report))


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="wsi-seg")


if __name__ == "__main__":
    main()
