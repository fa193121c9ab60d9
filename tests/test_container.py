"""The Dockerfile, job scripts and runbooks against the real package and click command tree."""

from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import click
import pytest

from pipelines.cli import cli

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "docs" / "cluster.md"]
SCRIPTS = sorted((ROOT / "scripts").rglob("*.sh")) + [ROOT / "benchmarks" / "bench_gpu.sh"]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SHELL_OPS = {";", "&&", "||", "|", "&", "(", ")", "|&", ";;"}


def _dockerfile() -> list[str]:
    """Dockerfile instructions, one string each (continuation lines joined, comments dropped)."""
    text = (ROOT / "Dockerfile").read_text()
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    return [s.strip() for s in "\n".join(lines).replace("\\\n", " ").splitlines() if s.strip()]


def _instructions(keyword: str) -> list[str]:
    return [i for i in _dockerfile() if i.split()[0].upper() == keyword]


# -- command-line extraction -----------------------------------------------------------------


def _fenced_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, line) inside ``` fences of a Markdown file."""
    out, inside = [], False
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.lstrip().startswith("```"):
            inside = not inside
        elif inside:
            out.append((number, line))
    return out


def _script_lines(path: Path) -> list[tuple[int, str]]:
    """(first line number, logical line) of a shell script, backslash continuations joined."""
    out: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for number, line in enumerate(path.read_text().splitlines(), 1):
        start, text = pending if pending else (number, "")
        text += line
        if line.endswith("\\"):
            pending = (start, text[:-1] + " ")
        else:
            out.append((start, text))
            pending = None
    return out


def _commands(line: str) -> list[list[str]]:
    """Split one shell line into simple commands (tokens), dropping comments."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        tokens = list(lexer)
    except ValueError:  # unbalanced quotes: not a command line
        return []
    commands: list[list[str]] = [[]]
    for tok in tokens:
        if tok in SHELL_OPS:
            commands.append([])
        else:
            commands[-1].append(tok)
    return [c for c in commands if c]


def _is_entry(tokens: list[str], i: int) -> bool:
    """Is ``tokens[i]`` the ``wsi-seg`` program (not an image tag, file or package name)?"""
    tok = tokens[i]
    if tok != "wsi-seg" and not tok.endswith("/wsi-seg"):
        return False
    if i > 0 and tokens[i - 1] in {"-t", "--tag", "--name"}:
        return False
    head = tokens[:2]
    return not (head[0] in {"docker", "podman"} and head[1:] != ["run"])


def extract(tokens: list[str]) -> tuple[str, list[str]] | None:
    """``("wsi-seg", args)`` or ``("torchrun", tokens)`` for a command that runs wsi-seg."""
    if "pipelines.train" in tokens and tokens[tokens.index("pipelines.train") - 1] == "-m":
        return "torchrun", tokens
    if tokens[0] in {"apptainer", "singularity"} and tokens[1:2] == ["run"]:
        sif = next(i for i, t in enumerate(tokens) if t.endswith(".sif"))
        return "wsi-seg", tokens[sif + 1 :]  # the image's entry point is wsi-seg
    for i in range(len(tokens)):
        if _is_entry(tokens, i):
            return "wsi-seg", tokens[i + 1 :]
    return None


def collected() -> list[tuple[str, str, list[str]]]:
    """Every wsi-seg / torchrun command of the docs and scripts: (where, kind, tokens)."""
    found = []
    sources = [(p, _fenced_lines(p)) for p in DOCS if p.exists()]
    sources += [(p, _script_lines(p)) for p in SCRIPTS]
    for path, lines in sources:
        for number, line in lines:
            for tokens in _commands(line):
                hit = extract(tokens)
                if hit:
                    found.append((f"{path.relative_to(ROOT)}:{number}", *hit))
    return found


# -- checking against click ------------------------------------------------------------------


def _opaque(tok: str) -> bool:
    """A shell expansion that may stand for any number of words."""
    return tok.startswith("$") and ("[@]" in tok or tok in {"$@", "$*"})


def check_click(command: click.Command, args: list[str]) -> list[str]:
    """Problems of ``args`` against ``command``'s click params (no command is invoked)."""
    options: dict[str, click.Option | None] = {"-h": None, "--help": None}
    for p in command.params:
        if isinstance(p, click.Option):
            options.update(dict.fromkeys(p.opts + p.secondary_opts, p))
    arguments = [p for p in command.params if isinstance(p, click.Argument)]
    max_pos = sum(float("inf") if p.nargs < 0 else p.nargs for p in arguments)
    problems, positional, i, opaque = [], 0, 0, False
    while i < len(args):
        tok = args[i]
        i += 1
        if _opaque(tok):
            opaque = True
        elif tok.startswith("-") and len(tok) > 1 and not re.fullmatch(r"-[\d.]+", tok):
            name, eq, value = tok.partition("=")
            if name not in options:
                problems.append(f"{command.name}: no option {name}")
                continue
            opt = options[name]
            if opt is None or opt.is_flag or opt.count:
                continue
            values = [value] if eq else args[i : i + opt.nargs]
            i += 0 if eq else opt.nargs
            problems += _check_choice(command, opt, values)
        else:
            positional += 1
    if positional > max_pos and not opaque:
        problems.append(f"{command.name}: {positional} arguments, takes at most {max_pos}")
    return problems


def _check_choice(command: click.Command, opt: click.Option, values: list[str]) -> list[str]:
    if not isinstance(opt.type, click.Choice):
        return []
    literal = [v for v in values if "$" not in v]
    return [
        f"{command.name}: {opt.opts[-1]} {v!r} not in {list(opt.type.choices)}"
        for v in literal
        if v not in opt.type.choices
    ]


def check_wsi_seg(args: list[str]) -> list[str]:
    """Problems of a ``wsi-seg ARGS`` line: global options, subcommand, its options."""
    globals_ = {o for p in cli.params for o in p.opts} | {"-h", "--help"}
    while args and args[0].startswith("-"):
        if args[0] not in globals_:
            return [f"wsi-seg: no global option {args[0]}"]
        if args[0] in {"-h", "--help", "--version"}:
            return []
        args = args[1:]
    if not args:
        return []
    if args[0] not in cli.commands:
        return [f"wsi-seg: no subcommand {args[0]!r} (have {sorted(cli.commands)})"]
    return check_click(cli.commands[args[0]], args[1:])


def check_torchrun(tokens: list[str]) -> list[str]:
    """torchrun's own options (torch's parser) and train's options after -m pipelines.train."""
    from torch.distributed.run import get_args_parser

    known = get_args_parser()._option_string_actions
    at = tokens.index("pipelines.train")
    start = tokens.index("torchrun") + 1 if "torchrun" in tokens else at - 1
    problems = [
        f"torchrun: no option {t}"
        for t in tokens[start : at - 1]
        if t.startswith("-") and t.partition("=")[0] not in known
    ]
    if "train" not in cli.commands:
        return problems + [f"wsi-seg: no subcommand 'train' (have {sorted(cli.commands)})"]
    return problems + check_click(cli.commands["train"], tokens[at + 1 :])


COMMANDS = collected()


def test_commands_are_found() -> None:
    """The runbook and scripts hold the commands this test exists to check."""
    kinds = {(where.split(":")[0], kind) for where, kind, _ in COMMANDS}
    assert ("scripts/slurm/infer_array.sh", "wsi-seg") in kinds
    assert ("scripts/slurm/train_1node.sh", "torchrun") in kinds
    assert ("scripts/slurm/train_multinode.sh", "torchrun") in kinds
    assert ("benchmarks/bench_gpu.sh", "wsi-seg") in kinds
    assert ("docs/cluster.md", "torchrun") in kinds
    assert sum(1 for w, k, _ in COMMANDS if w.startswith("docs/cluster.md")) >= 8


@pytest.mark.parametrize(("where", "kind", "tokens"), COMMANDS, ids=[c[0] for c in COMMANDS])
def test_command_parses(where: str, kind: str, tokens: list[str]) -> None:
    """Each subcommand exists and every option it passes exists (and literal choices fit)."""
    problems = check_wsi_seg(tokens) if kind == "wsi-seg" else check_torchrun(tokens)
    assert problems == [], f"{where}: {shlex.join(tokens)}"


def test_checker_catches_bad_lines() -> None:
    """The checker itself: wrong subcommand, option, choice and argument count are caught."""
    assert check_wsi_seg(["inspect", "a.svs", "--backend", "tiffslide", "--json"]) == []
    assert check_wsi_seg(["--debug", "synth", "out", "--size=64x64"]) == []
    assert check_wsi_seg(["nosuch"])[0].startswith("wsi-seg: no subcommand 'nosuch'")
    assert check_wsi_seg(["inspect", "a.svs", "--nope"]) == ["inspect: no option --nope"]
    assert check_wsi_seg(["inspect", "a", "--backend", "x"]) == [
        "inspect: --backend 'x' not in ['auto', 'tiffslide', 'openslide', 'image']"
    ]
    assert check_wsi_seg(["inspect", "a.svs", "b.svs"]) == ["inspect: 2 arguments, takes at most 1"]
    assert check_wsi_seg(["inspect", "${ARGS[@]}", "a", "b"]) == []
    line = "docker run --rm -v /d:/d wsi-seg inspect /d/a.svs --json  # comment"
    assert [extract(t) for t in _commands(line)] == [("wsi-seg", ["inspect", "/d/a.svs", "--json"])]
    line = "docker build -t wsi-seg . && docker tag wsi-seg r/w"
    assert [extract(t) for t in _commands(line)] == [None, None]
    line = "apptainer run --nv x/wsi-seg.sif synth o --count 2"
    assert [extract(t) for t in _commands(line)] == [("wsi-seg", ["synth", "o", "--count", "2"])]


def test_dask_driver_command_parses() -> None:
    """The dask-jobqueue driver's ``wsi-seg infer --scheduler`` command and its SLURM job."""
    spec = importlib.util.spec_from_file_location(
        "dask_infer", ROOT / "scripts/slurm/dask_infer.py"
    )
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    args = mod.parse_args(["--slides", "s.csv", "-o", "m", "--model", "r", "--sif", "w.sif"])
    command = mod.infer_command(args, "tcp://10.0.0.1:8786")
    assert command[:3] == ["apptainer", "exec", "w.sif"]
    assert check_wsi_seg(command[4:]) == []
    kwargs = mod.cluster_kwargs(args)
    threads = "OMP_NUM_THREADS=8,MKL_NUM_THREADS=8,TIFFSLIDE_NUM_DECODE_THREADS=8"
    assert kwargs["python"] == f"apptainer exec --nv --env {threads} w.sif python"
    assert (kwargs["cores"], kwargs["processes"], kwargs["job_cpu"]) == (1, 1, 8)
    assert kwargs["job_extra_directives"] == ["--gpus=1"]


def test_dockerfile_installs_package_extras_entry_point() -> None:
    """Base, dependency layer before source, base torch pinned, extras, self-check, user."""
    base = _instructions("ARG")[0]
    assert re.fullmatch(r"ARG BASE_IMAGE=pytorch/pytorch:[\d.]+-cuda[\d.]+-cudnn\d+-runtime", base)
    assert _instructions("FROM") == ["FROM ${BASE_IMAGE}"]
    scripts = PYPROJECT["project"]["scripts"]
    assert _instructions("ENTRYPOINT") == [f'ENTRYPOINT ["{next(iter(scripts))}"]']
    assert list(scripts) == ["wsi-seg"]

    extras = next(i for i in _instructions("ARG") if i.startswith("ARG EXTRAS="))
    named = [e for e in extras.partition("=")[2].split(",") if e]
    assert set(named) <= set(PYPROJECT["project"]["optional-dependencies"]), named

    steps = _dockerfile()
    copy_pyproject = steps.index("COPY pyproject.toml ./")
    copy_sources = [steps.index(f"COPY {d} ./{d}") for d in ("wsi_downsample", "pipelines")]
    deps = next(i for i, s in enumerate(steps) if "--requirement" in s)
    package = next(i for i, s in enumerate(steps) if "--no-deps ." in s)
    assert copy_pyproject < deps < min(copy_sources) < package
    assert "--constraint /opt/base-torch.txt" in steps[deps]
    assert "diff /opt/base-torch.txt -" in steps[package]  # torch still the base's
    for needed in ("import torch", "pipelines.train", "pipelines.infer", "wsi-seg --help"):
        assert needed in steps[package], needed

    user = _instructions("USER")
    assert len(user) == 1 and re.fullmatch(r"USER [1-9]\d*:[1-9]\d*", user[0])
    uid = user[0].split()[1].split(":")[0]
    useradd = next(i for i in _instructions("RUN") if "useradd" in i)
    assert f"--uid {uid} " in useradd and "--home-dir /tmp " in useradd
    env = " ".join(_instructions("ENV"))
    for var in ("OMP_NUM_THREADS=", "TIFFSLIDE_NUM_DECODE_THREADS="):
        assert var in env, var
    assert "HOME=" not in env  # Apptainer keeps the user's HOME; docker run passes -e HOME


def test_dockerfile_copies_exist_and_are_not_ignored() -> None:
    """Every COPY source exists, is not excluded by .dockerignore, and the self-check's modules
    are in the repository."""
    ignored = {
        ln.strip()
        for ln in (ROOT / ".dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    }
    for step in _instructions("COPY"):
        source = step.split()[1]
        assert (ROOT / source).exists(), source
        assert source.split("/")[0] not in ignored, source
    assert {".venv", ".git", "out", "runs"} <= ignored
    for module in ("train", "infer"):
        assert (ROOT / "pipelines" / f"{module}.py").exists(), f"pipelines/{module}.py"


def test_docs_use_the_built_tag_and_real_extras() -> None:
    """docker run lines run the tag docker build makes; every pip extra named exists."""
    extras = set(PYPROJECT["project"]["optional-dependencies"])
    for path in DOCS:
        if not path.exists():
            continue
        text = path.read_text()
        tags = set(re.findall(r"docker build -t (\S+)", text))
        for number, line in _fenced_lines(path):
            for tokens in _commands(line):
                if tokens[:2] == ["docker", "run"] and tags:
                    assert set(tokens) & tags, f"{path.name}:{number}: no image {tags}"
        for named in re.findall(r'(?:\.|wsi-seg)\[([\w,-]+)\]"', text):
            assert set(named.split(",")) <= extras, f"{path.name}: extra [{named}]"


def test_pyproject_requirements_script(tmp_path: Path) -> None:
    """The Dockerfile's dependency list: dependencies then the extras'; unknown extras fail."""
    spec = importlib.util.spec_from_file_location(
        "pyproject_requirements", ROOT / "scripts/pyproject_requirements.py"
    )
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    toml = tmp_path / "pyproject.toml"
    toml.write_text(
        '[project]\nname = "x"\ndependencies = ["a>=1", "b"]\n'
        '[project.optional-dependencies]\ncluster = ["c"]\ntest = ["d", "e"]\n'
    )
    assert mod.requirements(toml, []) == ["a>=1", "b"]
    assert mod.requirements(toml, ["test", "cluster"]) == ["a>=1", "b", "d", "e", "c"]
    with pytest.raises(SystemExit, match="no extra gpu; defined: cluster, test"):
        mod.requirements(toml, ["gpu"])


def test_help_does_not_import_torch() -> None:
    """``wsi-seg --help`` (and each subcommand's --help) stays light: torch is never imported."""
    names = sorted(cli.commands)
    code = (
        "import sys\nfrom pipelines.cli import cli\n"
        f"for args in [['--help']] + [[n, '--help'] for n in {names!r}]:\n"
        "    try:\n        cli.main(args, prog_name='wsi-seg')\n"
        "    except SystemExit as e:\n        assert e.code == 0, (args, e.code)\n"
        "heavy = sorted(m for m in ('torch', 'timm', 'monai') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "HEAVY []"
