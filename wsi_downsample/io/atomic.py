"""One atomic-output mechanism for every writer and command: stage, then rename into place.

Every output is written to a hidden temporary sibling (``.NAME.tmp-PID-XXXX``) and renamed
onto its final name only when complete; on an exception, SIGINT or SIGTERM (which the CLI
turns into :class:`~wsi_downsample.errors.Interrupted`) the temporary is removed and the
final name is left untouched. A multi-file output (a mask with its sidecars, a slide with
its mask and manifest) is staged in one hidden folder and moved into place together
(:class:`OutputSet`); a folder output (a run directory) is built as a temporary sibling
folder (:func:`atomic_dir`). Files are created with ``open``, so their modes follow the
umask. Temporaries left by a killed process (SIGKILL, power loss) carry its pid and are
swept the next time the same output is written.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from wsi_downsample.errors import OutputError, OutputExistsError

__all__ = [
    "OutputSet",
    "atomic_dir",
    "atomic_path",
    "check_outputs",
    "live_temporaries",
    "remove_temporaries",
    "write_json_atomic",
    "write_text_atomic",
]

_LIVE: set[Path] = set()  # temporaries of this process not yet renamed or removed
_TMP = ".tmp-"
_STAGING = ".wsi-seg-staging-"
_DISK_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOENT}


def _temp_sibling(path: Path, kind: str = _TMP) -> Path:
    """A hidden sibling name that carries this process's pid (stale ones can be swept)."""
    return path.with_name(f".{path.name}{kind}{os.getpid()}-{secrets.token_hex(4)}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sweep_stale(path: Path) -> None:
    """Remove temporaries of ``path`` left by processes that no longer run."""
    try:
        siblings = list(path.parent.glob(f".{path.name}{_TMP}*"))
    except OSError:
        return
    for tmp in siblings:
        pid = tmp.name.rsplit(_TMP, 1)[-1].split("-", 1)[0]
        if pid.isdigit() and not _pid_alive(int(pid)):
            _remove(tmp)


def _remove(path: Path) -> None:
    """Remove a file or folder, never raising (cleanup must not mask the first error)."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        pass
    _LIVE.discard(path)


def live_temporaries() -> list[Path]:
    """Temporaries this process has open (for tests and the CLI's interrupt handler)."""
    return sorted(_LIVE)


def remove_temporaries() -> None:
    """Remove every temporary of this process (the CLI calls it on any abnormal exit)."""
    for path in list(_LIVE):
        _remove(path)


def _output_error(path: Path, exc: OSError) -> OutputError:
    reason = exc.strerror or str(exc)
    return OutputError(
        f"cannot write {path}: {reason}; choose a folder you can write to, with free space"
    )


def _make_parents(path: Path) -> list[Path]:
    """Create missing parent folders of ``path``; return those created (deepest last)."""
    missing = []
    parent = path.parent
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    for folder in reversed(missing):
        try:
            folder.mkdir()
        except OSError as exc:
            _remove_empty(missing)
            raise _output_error(path, exc) from None
    return list(reversed(missing))


def _remove_empty(folders: list[Path]) -> None:
    """Remove folders created for an output that never appeared (deepest first)."""
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        try:
            folder.rmdir()
        except OSError:
            pass


def check_outputs(paths: Iterable[str | os.PathLike[str]], overwrite: bool = False) -> None:
    """Fail before any work when an output exists (without ``overwrite``) or is a folder.

    Raises
    ------
    OutputExistsError
        Naming the first existing output, with the fix ``overwrite=True`` (``--overwrite``).
    """
    for raw in paths:
        path = Path(raw)
        if path.is_dir() and not path.is_symlink() and path.suffix:
            raise OutputExistsError(f"{path} is a folder; the output must be a file name")
        if path.exists() and not overwrite:
            raise OutputExistsError(
                f"{path} exists already; remove it or allow replacing it",
                hint={"overwrite": True},
            )


@contextmanager
def atomic_path(path: str | os.PathLike[str], *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; rename it onto ``path`` when the block succeeds.

    On any exception (or interrupt) the temporary and any parent folders created for it are
    removed and ``path`` is left as it was. ``overwrite=False`` refuses an existing ``path``
    (checked before and again at the rename). OS errors on the output (no permission, no
    space, read-only disk) become :class:`OutputError` naming ``path``.
    """
    path = Path(path)
    if not overwrite:
        check_outputs([path])
    created = _make_parents(path)
    _sweep_stale(path)
    tmp = _temp_sibling(path)
    _LIVE.add(tmp)
    try:
        try:
            tmp.touch()  # fail here, with the output's name, if the folder is not writable
        except OSError as exc:
            raise _output_error(path, exc) from None
        yield tmp
        if not overwrite:
            check_outputs([path])
        try:
            os.replace(tmp, path)
        except OSError as exc:
            raise _output_error(path, exc) from None
    except OSError as exc:
        _remove(tmp)
        _remove_empty(created)
        if isinstance(exc, OutputError) or exc.errno not in _DISK_ERRNOS:
            raise
        if exc.filename not in (None, str(tmp)):
            raise
        raise _output_error(path, exc) from exc
    except BaseException:
        _remove(tmp)
        _remove_empty(created)
        raise
    _LIVE.discard(tmp)


def write_text_atomic(path: str | os.PathLike[str], text: str, *, overwrite: bool = True) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; return ``path``."""
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json_atomic(path: str | os.PathLike[str], data: Any, *, overwrite: bool = True) -> Path:
    """Write ``data`` as indented JSON (non-JSON values as ``str``) to ``path`` atomically."""
    return write_text_atomic(
        path, json.dumps(data, indent=2, default=str) + "\n", overwrite=overwrite
    )


@contextmanager
def atomic_dir(path: str | os.PathLike[str], *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling folder that replaces the folder ``path`` on success.

    An existing ``path`` is refused unless ``overwrite``; with it, the old folder is moved
    aside, the new one renamed in, and only then the old one removed.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        check_outputs([path])
    created = _make_parents(path)
    _sweep_stale(path)
    tmp = _temp_sibling(path)
    _LIVE.add(tmp)
    try:
        try:
            tmp.mkdir()
        except OSError as exc:
            raise _output_error(path, exc) from None
        yield tmp
        _replace_dir(tmp, path, overwrite)
    except BaseException:
        _remove(tmp)
        _remove_empty(created)
        raise
    _LIVE.discard(tmp)


def _replace_dir(tmp: Path, path: Path, overwrite: bool) -> None:
    old = None
    if path.exists():
        if not overwrite:
            check_outputs([path])
        old = _temp_sibling(path, ".old-")
        os.replace(path, old)
    try:
        os.replace(tmp, path)
    except OSError as exc:
        if old is not None:
            os.replace(old, path)
        raise _output_error(path, exc) from None
    if old is not None:
        _remove(old)


class OutputSet:
    """A multi-file output that appears whole or not at all.

    Each output is written to ``out.path(final)``, a file in a hidden staging folder beside
    it; when the ``with`` block succeeds every staged file is moved onto its final name (old
    files are first moved aside so that a failing move puts them back); on an exception or
    an interrupt nothing is moved and the staging folders are removed. Outputs never staged
    (optional ones not asked for) are left alone.

    Parameters
    ----------
    paths
        The final paths of every output the block may write.
    overwrite
        Allow replacing existing outputs (checked at construction and at commit).

    Examples
    --------
    >>> with OutputSet([mask, geojson]) as out:          # doctest: +SKIP
    ...     write_label_tiff(out.path(mask), ...)
    ...     write_json_atomic(out.path(geojson), features)
    """

    def __init__(self, paths: Iterable[str | os.PathLike[str]], *, overwrite: bool = False):
        self.paths = [Path(p) for p in paths]
        if len(set(self.paths)) != len(self.paths):
            raise ValueError(f"outputs must be distinct, got {self.paths}")
        self.overwrite = overwrite
        check_outputs(self.paths, overwrite)
        self._staging: dict[Path, Path] = {}
        self._created: list[Path] = []

    def __enter__(self) -> OutputSet:
        for parent in dict.fromkeys(p.parent for p in self.paths):
            self._created += _make_parents(parent / "x")
            staging = _temp_sibling(parent / "outputs", _STAGING)
            try:
                staging.mkdir()
            except OSError as exc:
                self._abort()
                raise _output_error(parent / "outputs", exc) from None
            _LIVE.add(staging)
            self._staging[parent] = staging
        return self

    def path(self, final: str | os.PathLike[str]) -> Path:
        """The staging path to write the output ``final`` to."""
        final = Path(final)
        if final not in self.paths:
            raise ValueError(f"{final} is not one of this output set's paths {self.paths}")
        return self._staging[final.parent] / final.name

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            try:
                self._commit()
            except BaseException:
                self._abort()
                raise
        self._abort()

    def _commit(self) -> None:
        staged = [(self.path(p), p) for p in self.paths if self.path(p).exists()]
        if not self.overwrite:
            check_outputs([p for _, p in staged])
        moved: list[tuple[Path, Path | None]] = []
        try:
            for src, dst in staged:
                backup = None
                if dst.exists():
                    backup = src.with_name(f"{src.name}.old")
                    os.replace(dst, backup)
                os.replace(src, dst)
                moved.append((dst, backup))
        except OSError as exc:
            for dst, backup in reversed(moved):
                _remove(dst)
                if backup is not None:
                    os.replace(backup, dst)
            raise _output_error(staged[len(moved)][1], exc) from None

    def _abort(self) -> None:
        for staging in self._staging.values():
            _remove(staging)
        self._staging.clear()
        _remove_empty(self._created)
