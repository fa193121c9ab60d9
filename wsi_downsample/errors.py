"""Every error wsi-seg raises on bad input: one base class, specific subclasses.

Each subclass also inherits the builtin it refines, so ``except FileNotFoundError``
keeps working. Messages name the file, say what was expected and what was found,
and end with the fix.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "WsiSegError",
    "OutputExistsError",
    "OutputError",
    "Interrupted",
    "SlideNotFoundError",
    "NotASlideError",
    "CorruptSlideError",
    "UnsupportedCompressionError",
    "MissingMppError",
    "LevelError",
    "MaskMismatchError",
    "ManifestError",
    "ConfigError",
    "BudgetError",
    "CacheError",
]


class WsiSegError(Exception):
    """Base class of every error wsi-seg raises on bad input or bad settings.

    ``hint`` names the fix as library parameters (``{"backend": "tiffslide"}``): ``str(exc)``
    shows it in Python terms (``backend='tiffslide'``), and the CLI shows the same fix as its
    flags (``--backend tiffslide``) through :meth:`cli_message`. Messages themselves never
    name CLI flags, so each layer names what its user types.
    """

    def __init__(self, message: str, *, hint: Mapping[str, object] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = dict(hint or {})

    def __str__(self) -> str:
        if not self.hint:
            return self.message
        fix = " or ".join(f"{k}={v!r}" for k, v in self.hint.items())
        return f"{self.message}; try {fix}"

    def cli_message(self, flags: Mapping[str, str]) -> str:
        """The message with the hint as command-line flags (``flags``: parameter -> flag);
        a parameter without a flag is shown as in Python."""
        if not self.hint:
            return self.message
        parts = [_cli_fix(flags.get(k), k, v) for k, v in self.hint.items()]
        return f"{self.message}; try {' or '.join(parts)}"


class SlideNotFoundError(WsiSegError, FileNotFoundError):
    """A slide or mask path does not exist or is a directory."""


class NotASlideError(WsiSegError, ValueError):
    """The file exists but no backend can open it as an image."""


class CorruptSlideError(WsiSegError, OSError):
    """The file opens but its pixels cannot be decoded (truncated or corrupt)."""


class UnsupportedCompressionError(NotASlideError):
    """The file uses a compression scheme that no installed codec decodes."""


class MissingMppError(WsiSegError, ValueError):
    """A physical pixel size is needed but neither the file nor the caller gives one."""


class LevelError(WsiSegError, ValueError):
    """A pyramid level, mpp or downsample was asked that the slide cannot serve."""


class MaskMismatchError(WsiSegError, ValueError):
    """A label mask's frame does not match its slide."""


class ManifestError(WsiSegError, ValueError):
    """One or more rows of a manifest CSV are invalid (all are listed at once)."""


class ConfigError(WsiSegError, ValueError):
    """A YAML config has unknown keys or invalid values."""


class BudgetError(WsiSegError, ValueError):
    """A pixel budget (``HxW``, ``SHORTxLONG`` or a downsample) cannot be parsed or applied."""


class CacheError(WsiSegError, OSError):
    """A zarr level cache cannot be written or read."""


def _cli_fix(flag: str | None, param: str, value: object) -> str:
    """One hint as the command line says it: ``--flag VALUE``, a bare ``--flag`` for
    ``True``, ``without --flag`` for ``False``; ``param=value`` when no flag sets it."""
    if flag is None:
        return f"{param}={value!r}"
    if value is True:
        return flag
    if value is False:
        return f"without {flag}"
    return f"{flag} {value}"


class OutputExistsError(WsiSegError, FileExistsError):
    """An output exists already and overwriting was not asked for."""


class OutputError(WsiSegError, OSError):
    """An output cannot be written (folder missing or read-only, disk full, ...)."""


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived: raised in the main thread so that every ``finally`` runs
    and temporaries are removed. Not an ``Exception``: ``except Exception`` never swallows it.
    """

    def __init__(self, signum: int) -> None:
        import signal

        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum
