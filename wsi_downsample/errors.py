"""Every error wsi-seg raises on bad input: one base class, specific subclasses.

Each subclass also inherits the builtin it refines, so ``except FileNotFoundError``
keeps working. Messages name the file, say what was expected and what was found,
and end with the fix.
"""

from __future__ import annotations

__all__ = [
    "WsiSegError",
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
    """Base class of every error wsi-seg raises on bad input or bad settings."""


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
