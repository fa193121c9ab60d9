"""Peak memory of the measuring process itself, from /proc/self/status (Linux).

``ru_maxrss`` is no good for a process started by another: it keeps the high-water mark of
the memory it had at fork (the parent's, torch included) even after exec. ``VmHWM`` is the
peak of this process's own address space, and ``reset_peak`` restarts it, so a peak can be
taken around one call.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["peak_mb", "rss_mb", "reset_peak"]


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"{field} missing from /proc/self/status (Linux only)")


def peak_mb() -> float:
    """This process's peak resident set size (VmHWM) in MiB."""
    return _status_mb("VmHWM")


def rss_mb() -> float:
    """This process's current resident set size (VmRSS) in MiB."""
    return _status_mb("VmRSS")


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (``clear_refs`` 5); False where the kernel refuses."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True
