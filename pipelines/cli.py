"""The `wsi-seg` command line: a thin click shell over the pipeline functions.

Every command: options -> config -> one pipeline call. The group is the one guard every
command runs under (:class:`_Group`):

- bad input (any :class:`WsiSegError`, or a click usage error) prints one line
  ``error: ...`` naming the file or the option, and exits with status 2;
- any other exception prints one line naming the command and its input and exits with 1
  (``wsi-seg --debug CMD ...`` shows the traceback);
- SIGINT exits with 130 and SIGTERM with 143, after the temporaries of unfinished outputs
  are removed (outputs appear only whole, see ``wsi_downsample.io.atomic``).
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from wsi_downsample.errors import Interrupted, WsiSegError

__all__ = ["cli", "main", "FLAGS", "EXIT_BAD_INPUT", "EXIT_UNEXPECTED"]

BACKENDS = click.Choice(["auto", "tiffslide", "openslide", "image"])
EXIT_UNEXPECTED = 1
EXIT_BAD_INPUT = 2
EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}
#: library parameter -> the flag that sets it, for errors' hints (see WsiSegError.hint)
FLAGS = {
    "backend": "--backend",
    "mpp": "--slide-mpp",
    "slide_mpp": "--slide-mpp",
    "overwrite": "--overwrite",
    "config": "--config",
    "source_mpp": "--source-mpp",
    "skip_errors": "--skip-errors",
    "output_downsample": "--output-downsample",
    "resume": "--resume",
    "sampler": "--sampler",
    "device": "--device",
    "arch": "--arch",
    "shape_hw": "--size",
    "split": "--split",
    "fold": "--fold",
    "model": "--model",
    "checkpoint": "--checkpoint",
    "shard": "--shard",
    "probabilities": "--probabilities",
}
#: parameters that name a command's input, in order of preference (for unexpected errors)
_INPUTS = ("slide", "manifest", "slides", "model", "out_dir", "output")
_STATE: dict[str, Any] = {"debug": False, "command": "wsi-seg", "input": None}


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def _usage_line(exc: click.UsageError) -> str:
    """A click usage error as one line that names the option and never guesses another."""
    cmd = "wsi-seg"
    if exc.ctx is not None and exc.ctx.parent is not None:
        cmd = f"wsi-seg {exc.ctx.info_name}"
    if isinstance(exc, click.NoSuchOption):
        what = f"no such option {exc.option_name} for '{cmd}'"
    elif isinstance(exc, click.BadParameter):
        param = exc.param
        opts = [o for o in getattr(param, "opts", []) if o.startswith("--")]
        name = opts[0] if opts else (exc.param_hint or getattr(param, "name", "") or "argument")
        if isinstance(name, list | tuple):
            name = name[0]
        if isinstance(exc, click.MissingParameter):
            what = f"missing option {name}" if opts else f"missing argument {str(name).upper()}"
        else:
            what = f"{name}: {_one_line(exc.message)}"
    else:
        what = _one_line(exc.format_message()).rstrip(".")
    return f"error: {what}; see '{cmd} --help'"


def _raise_interrupt(signum: int, _frame: Any) -> None:
    raise Interrupted(signum)


@contextmanager
def _signals() -> Iterator[None]:
    """SIGINT/SIGTERM -> Interrupted in the main thread, so ``finally`` blocks clean up."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, _raise_interrupt) for s in EXIT_SIGNAL}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def _fail(line: str, code: int) -> None:
    # No import here: a signal can land while a module is half imported, and
    # importing again would fail. Temporaries exist only if atomic was loaded.
    atomic = sys.modules.get("wsi_downsample.io.atomic")
    remove_temporaries = getattr(atomic, "remove_temporaries", None)
    if remove_temporaries is not None:
        remove_temporaries()
    if _STATE["debug"]:
        traceback.print_exc()
    click.echo(line, err=True)
    sys.exit(code)


class _Command(click.Command):
    """Records the command's path and input for the guard's messages."""

    def invoke(self, ctx: click.Context) -> Any:
        _STATE["command"] = f"wsi-seg {ctx.info_name}"
        given = [ctx.params.get(k) for k in _INPUTS if ctx.params.get(k) is not None]
        _STATE["input"] = given[0] if given else None
        return super().invoke(ctx)


class _Group(click.Group):
    """The one guard every command runs under (see the module docstring)."""

    command_class = _Command

    def main(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        kwargs["standalone_mode"] = False
        try:
            with _signals():
                result = super().main(*args, **kwargs)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            _fail(_usage_line(exc), EXIT_BAD_INPUT)
        except click.ClickException as exc:
            _fail(f"error: {_one_line(exc.format_message())}", EXIT_BAD_INPUT)
        except WsiSegError as exc:
            _fail(f"error: {_one_line(exc.cli_message(FLAGS))}", EXIT_BAD_INPUT)
        except (click.Abort, KeyboardInterrupt) as exc:
            cause = exc if isinstance(exc, Interrupted) else exc.__context__
            signum = cause.signum if isinstance(cause, Interrupted) else signal.SIGINT
            name = signal.Signals(signum).name
            _fail(
                f"error: interrupted by {name}; unfinished outputs were removed",
                EXIT_SIGNAL[signal.Signals(signum)],
            )
        except Exception as exc:  # noqa: BLE001 - the guard: one line, never a traceback
            where = f" on {_STATE['input']}" if _STATE["input"] is not None else ""
            _fail(
                f"error: {_STATE['command']} failed{where}: {type(exc).__name__}: "
                f"{_one_line(exc)}; run with --debug for the traceback",
                EXIT_UNEXPECTED,
            )
        if isinstance(result, int) and result:
            sys.exit(result)
        return result


class SizeHW(click.ParamType):
    """``HxW`` (rows x columns) as a pair of positive ints, with an optional upper bound."""

    name = "HxW"

    def __init__(self, minimum: int = 1, maximum: int | None = None) -> None:
        self.minimum, self.maximum = minimum, maximum

    def convert(self, value: Any, param: Any, ctx: Any) -> tuple[int, int]:
        if isinstance(value, tuple):
            return value
        try:
            h, w = (int(v) for v in str(value).lower().split("x"))
        except ValueError:
            self.fail(f"{value!r} is not HxW (rows x columns), e.g. 15360x20480", param, ctx)
        if min(h, w) < self.minimum:
            self.fail(f"{value!r}: both sides must be at least {self.minimum}", param, ctx)
        if self.maximum is not None and max(h, w) > self.maximum:
            self.fail(f"{value!r}: sides must be at most {self.maximum}", param, ctx)
        return h, w


def _set_debug(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    _STATE["debug"] = bool(value)
    return value


overwrite_option = click.option(
    "--overwrite", is_flag=True, help="Replace existing outputs (refused otherwise)."
)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="wsi-seg")
@click.option(
    "--debug",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_set_debug,
    help="Show the traceback of errors.",
)
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
    from pipelines.inspect_slide import format_report, inspect_slide

    report = inspect_slide(slide, backend=backend, mpp=slide_mpp)
    click.echo(json.dumps(report, indent=2) if as_json else format_report(report))


@cli.command()
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--size",
    "size_hw",
    type=SizeHW(minimum=64),
    default="15360x20480",
    show_default=True,
    help="Level-0 size HxW (rows x columns).",
)
@click.option("--count", type=click.IntRange(min=1, max=1000), default=1, show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option(
    "--preset",
    type=click.Choice(["default", "budget"]),
    default="default",
    show_default=True,
    help="default: small glands everywhere; budget: regional lesions (see README).",
)
@overwrite_option
def synth(
    out_dir: Path, size_hw: tuple[int, int], count: int, seed: int, preset: str, overwrite: bool
) -> None:
    """Write COUNT synthetic H&E-like slides, their Gleason masks and a manifest to OUT_DIR."""
    from pipelines.synth import run_synth

    manifest = run_synth(
        out_dir,
        size_hw,
        count=count,
        seed=seed,
        preset=preset,
        overwrite=overwrite,
        progress=sys.stderr.isatty(),
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
@click.option(
    "--size", "size_hw", type=SizeHW(), default=None, help="Fixed budget HxW (rows x columns)."
)
@click.option("--dynamic", default=None, help="Dynamic budget SHORTxLONG (paper: 80x800).")
@click.option(
    "--downsample",
    type=click.FloatRange(min=1),
    default=None,
    help="Budget as a downsample factor per axis.",
)
@click.option(
    "--sampler",
    type=click.Choice(["uniform", "edge", "learned"]),
    default=None,
    help="Sampler (default: the config's, uniform); learned needs --model.",
)
@click.option(
    "--model",
    type=click.Path(path_type=Path),
    default=None,
    help="Trained run directory or checkpoint: the learned density's IoU(Y',Y).",
)
@click.option(
    "--blur",
    type=click.FloatRange(min=0, max=100),
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
@overwrite_option
def intrinsic(as_json: bool, **options: Any) -> None:
    """IoU(Y',Y) of a sampler at a budget over a manifest's masks (the paper's Sec. 2.2)."""
    from pipelines.intrinsic import format_intrinsic, intrinsic_from_options

    report = intrinsic_from_options(**options)
    click.echo(json.dumps(report, indent=2) if as_json else format_intrinsic(report))


@cli.command()
@click.option("--slides", "manifest", required=True, type=click.Path(path_type=Path))
@click.option("--model", type=click.Path(path_type=Path), help="Run directory or checkpoint.")
@click.option("--pred-dir", type=click.Path(path_type=Path), help="Folder of infer outputs.")
@click.option("--checkpoint", type=click.Choice(["best", "last"]), default="best")
@click.option("--split", type=click.Choice(["train", "val", "test"]), default="test")
@click.option("--fold", type=click.IntRange(min=0), default=None, help="Score fold K's rows.")
@click.option("--output-downsample", default=None, help="D (default: the source level's).")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None)
@click.option("--slide-mpp", type=click.FloatRange(min=0, min_open=True), default=None)
@click.option("--device", default="auto", show_default=True)
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option("--json", "as_json", is_flag=True, help="Print the JSON report.")
@overwrite_option
def evaluate(as_json: bool, **options: Any) -> None:
    """Full-res, warped-space and IoU(Y',Y) mIoU, trimap and cost over a manifest's masks."""
    from pipelines.evaluate import evaluate_from_options
    from pipelines.evaluate_report import format_report

    report = evaluate_from_options(**options)
    click.echo(json.dumps(report, indent=2) if as_json else format_report(report))


@cli.command()
@click.option("--slides", "manifest", required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="Run dir.")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None)
@click.option("--epochs", type=click.IntRange(min=1), default=None)
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Steps per epoch.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None)
@click.option("--num-workers", type=click.IntRange(min=0), default=None)
@click.option("--device", default=None, help="auto | cpu | cuda | cuda:N (default: config's).")
@click.option("--sampler", type=click.Choice(["uniform", "edge", "learned"]), default=None)
@click.option("--arch", type=click.Choice(["hrnet_w18_small", "hrnet_w18", "hrnet_w48"]))
@click.option("--fold", type=click.IntRange(min=0), default=None, help="Validate on fold K.")
@click.option("--seed", type=click.IntRange(min=0), default=None)
@click.option("--weights", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--resume", is_flag=True, help="Continue the run in OUTPUT from its last.pt.")
@click.option("--skip-errors", is_flag=True, help="Log and skip slides that fail to read.")
@click.option("--nproc", type=click.IntRange(min=1), default=1, help="Processes (torchrun).")
@overwrite_option
def train(**options: Any) -> None:
    """Train the deformation module and an HRNet segmenter on a manifest's slides."""
    from pipelines.train import train_from_options

    run_dir = train_from_options(**options)
    if run_dir is not None:  # under torchrun, rank 0 only
        click.echo(str(run_dir))


@cli.command()
@click.argument("slide", required=False, type=click.Path(path_type=Path))
@click.option("--slides", "manifest", type=click.Path(path_type=Path), help="Manifest CSV.")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="Mask/dir.")
@click.option("--model", required=True, type=click.Path(path_type=Path), help="Run dir or .pt.")
@click.option("--checkpoint", type=click.Choice(["best", "last"]), default="best")
@click.option("--output-downsample", default="auto", show_default=True, help="auto or D.")
@click.option("--geojson", type=click.Path(path_type=Path), help="GeoJSON path (default: STEM).")
@click.option("--no-geojson", is_flag=True)
@click.option("--preview", type=click.Path(path_type=Path), help="PNG path (default: STEM).")
@click.option("--no-preview", is_flag=True)
@click.option("--probabilities", type=click.Path(path_type=Path), default=None)
@click.option("--sampler", type=click.Choice(["uniform", "edge"]), help="Diagnostic override.")
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda[:N].")
@click.option("--slide-mpp", type=click.FloatRange(min=0, min_open=True), default=None)
@click.option("--backend", type=BACKENDS, default="auto", show_default=True)
@click.option("--skip-errors", is_flag=True, help="Record failing slides and go on.")
@click.option("--workers", type=click.IntRange(min=1), default=1, help="Slides in parallel.")
@click.option("--scheduler", default=None, help="Address of an existing Dask scheduler.")
@click.option("--shard", default=None, help="K/N: every N-th slide from the K-th (0-based).")
@overwrite_option
def infer(**options: Any) -> None:
    """Segment SLIDE (or every slide of --slides) into a QuPath-ready mask, GeoJSON, preview."""
    from pipelines.batch import infer_from_options

    click.echo(infer_from_options(**options))


@cli.command()
@click.option("-o", "--output", type=click.Path(path_type=Path), default=Path("out/demo"))
@click.option("--quick", is_flag=True, help="Under a minute, one model, no comparison (tests).")
def demo(output: Path, quick: bool) -> None:
    """Synthetic slides -> uniform + learned models -> QuPath-ready outputs (out/demo)."""
    from pipelines.demo import run_demo

    run_demo(output, quick=quick, progress=sys.stderr.isatty(), echo=click.echo)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="wsi-seg")


if __name__ == "__main__":
    main()
