"""`jinlian build`: compile the pure core with mypyc, once per source hash.

mypyc (it ships with mypy) translates `matching/`, `settlement/` and `exchange/venue/` into one
C extension group; setuptools compiles it with the interpreter's C compiler. The build goes to a
temporary directory beside its destination and is renamed into place only when complete, with
a manifest (`build.json`: the source hash, the modules, the tool versions, the seconds it took),
so a build interrupted half way is never picked up. The sources are hashed before and after:
a source edited during the build discards it. Older builds are removed (one build is kept).
`exchange.compiled` decides at import time whether a build matches the sources.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from importlib import metadata
from pathlib import Path

from exchange import compiled

PTH_NAME = "jinlian_compiled.pth"
OPT_LEVEL = "3"
LOG_TAIL_LINES = 40

# Run in a child interpreter from the repository root, so that setuptools' and the compiler's
# output go to one log, and mypy resolves the core's imports from the source tree.
SETUP_SCRIPT = """
import sys
from mypyc.build import mypycify
from setuptools import setup

work, opt_level, group, *paths = sys.argv[1:]
modules = mypycify(paths, opt_level=opt_level, target_dir=work + "/c", group_name=group)
setup(
    name="jinlian-core-compiled",
    ext_modules=modules,
    script_args=["build_ext", "--build-lib", work + "/lib", "--build-temp", work + "/obj"],
)
"""


class ToolchainMissingError(Exception):
    """No C compiler or no Python headers: the compiled build cannot be made here."""


def toolchain_problem() -> str | None:
    """What the build lacks (a C compiler, `Python.h`), or None when it can run."""
    compiler = str(sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        return f"no C compiler: {compiler!r} is not on PATH"
    headers = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if not headers.is_file():
        return f"no Python headers: {headers} is missing"
    return None


def write_pth() -> Path:
    """Install the finder at every start-up of this environment's interpreter (site-packages'
    `.pth` lines that start with `import` run before anything else is imported)."""
    path = Path(sysconfig.get_paths()["purelib"]) / PTH_NAME
    line = "import exchange.compiled; exchange.compiled.install()\n"
    if not path.is_file() or path.read_text() != line:
        path.write_text(line)
    return path


def _compile(work: Path) -> None:
    sources = [str(path.relative_to(compiled.ROOT)) for path in compiled.compiled_sources()]
    command = [sys.executable, "-c", SETUP_SCRIPT, str(work), OPT_LEVEL, compiled.GROUP, *sources]
    log_path = work / "build.log"
    with log_path.open("wb") as log:
        environment = {**os.environ, compiled.VARIABLE: "pure"}
        done = subprocess.run(
            command,
            cwd=compiled.ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environment,
            check=False,
        )
    if done.returncode != 0:
        tail = log_path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        raise RuntimeError(
            f"mypyc failed (exit {done.returncode}); last lines of {log_path}:\n" + "\n".join(tail)
        )


def build(*, force: bool = False) -> tuple[Path, float | None]:
    """The compiled build of the current sources, made if missing: (directory, seconds spent
    building, None when it was already there). `ToolchainMissingError` if it cannot be made."""
    digest = compiled.source_hash()
    builds = compiled.build_root()
    directory = compiled.build_directory(digest, builds)
    modules = [compiled.module_name(path) for path in compiled.compiled_sources()]
    if not force and compiled.build_problem(directory, digest, modules) is None:
        return directory, None
    problem = toolchain_problem()
    if problem is not None:
        raise ToolchainMissingError(problem)
    builds.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="building-", dir=builds))
    try:
        _compile(work)
        if compiled.source_hash() != digest:
            raise RuntimeError("a core source changed during the build: run `jinlian build` again")
        seconds = time.perf_counter() - start
        manifest = {
            "source_hash": digest,
            "modules": modules,
            "python": sys.version.split()[0],
            "mypy": metadata.version("mypy"),
            "opt_level": OPT_LEVEL,
            "seconds": round(seconds, 1),
        }
        (work / "lib" / compiled.MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        shutil.rmtree(directory, ignore_errors=True)
        (work / "lib").rename(directory)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for other in builds.iterdir():  # one build kept: the bound on what builds may occupy
        if other != directory:
            shutil.rmtree(other, ignore_errors=True)
    return directory, seconds


def main(arguments: argparse.Namespace) -> int:
    """`jinlian build [--force] [--check]`."""
    if arguments.check:
        problem = toolchain_problem()
        print(problem or "the compiled build can be made here (C compiler and Python headers)")
        return 0 if problem is None else 3
    try:
        directory, seconds = build(force=arguments.force)
    except ToolchainMissingError as error:
        print(f"jinlian build: cannot compile the core: {error}", file=sys.stderr)
        return 3
    except RuntimeError as error:
        print(f"jinlian build: {error}", file=sys.stderr)
        return 1
    pth = write_pth()
    digest = compiled.source_hash()
    done = "up to date" if seconds is None else f"built in {seconds:.1f} s"
    print(f"compiled build of sources {digest[:12]} {done}: {directory} (finder: {pth})")
    return 0
