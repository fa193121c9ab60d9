"""Print pyproject.toml's dependencies (plus the named extras), one a line, for pip -r.

Used by the Dockerfile to install the dependencies in their own cached layer, before the
source is copied: ``python pyproject_requirements.py pyproject.toml cluster,test``.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path


def requirements(pyproject: Path, extras: list[str]) -> list[str]:
    """The project's dependencies followed by those of each extra in ``extras``.

    Raises
    ------
    SystemExit
        When an extra is not defined in ``[project.optional-dependencies]``.
    """
    project = tomllib.loads(pyproject.read_text())["project"]
    optional = project.get("optional-dependencies", {})
    unknown = [e for e in extras if e not in optional]
    if unknown:
        raise SystemExit(
            f"{pyproject}: no extra {', '.join(unknown)}; defined: {', '.join(sorted(optional))}"
        )
    return list(project["dependencies"]) + [d for e in extras for d in optional[e]]


def main(argv: list[str]) -> None:
    """``pyproject_requirements.py PYPROJECT [EXTRA,EXTRA...]``."""
    extras = [e for e in (argv[2] if len(argv) > 2 else "").split(",") if e]
    print("\n".join(requirements(Path(argv[1]), extras)))


if __name__ == "__main__":
    main(sys.argv)
