"""Which build of the pure core a process runs, and the import hook that loads it.

The pure core (`matching/`, `settlement/`, `exchange/venue/`) is Python source, the reference
that runs everywhere; `jinlian build` (`exchange.compiled_build`) compiles it with mypyc into a
directory outside the source tree, named by the SHA-256 of the sources it was built from. At
start-up (the `jinlian_compiled.pth` file that `jinlian build` writes into the environment's
site-packages, or `exchange/__init__.py` if nothing of the core was imported yet) a meta path
finder is installed; on the first import of a core module it hashes the current sources once
and decides for the whole process:

- `JINLIAN_BUILD=pure`: the sources.
- `JINLIAN_BUILD=compiled`: the compiled build of these very sources; if there is none, the
  process exits 2 saying why.
- unset or empty: the compiled build when one of these sources is present, else the sources;
  the reason is logged on one line at debug level (logger `exchange.compiled`).

A malformed value exits 2 naming it. Child processes inherit the variable. Because the build
directory is keyed by the hash of every core source, an edited source (even a comment) selects
a directory that does not exist: stale compiled modules can never shadow edited sources. One
process never mixes builds: compiled modules call each other natively, so all of the core is
compiled or none of it is.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import logging
import os
import sys
import sysconfig
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

VARIABLE = "JINLIAN_BUILD"
CHOICES = ("pure", "compiled")
CORE = ("matching", "settlement", "exchange/venue")
GROUP = "jinlian_core"  # mypyc's group: the shared library is `jinlian_core__mypyc`
SHARED_LIBRARY = f"{GROUP}__mypyc"
MANIFEST = "build.json"
ROOT = Path(__file__).resolve().parent.parent
EXTENSION_SUFFIX = str(sysconfig.get_config_var("EXT_SUFFIX") or ".so")

log = logging.getLogger("exchange.compiled")


class BuildSelectionError(Exception):
    """`JINLIAN_BUILD` is malformed, or asks for a compiled build that is not there."""


def core_sources(root: Path = ROOT) -> list[Path]:
    """Every source file of the core, in a fixed order (the packages are flat)."""
    return sorted(path for package in CORE for path in (root / package).glob("*.py"))


def module_name(path: Path, root: Path = ROOT) -> str:
    """`matching/engine.py` -> `matching.engine`; a package's `__init__.py` -> the package."""
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


# Modules that stay Python in the compiled build. The commands and events: the codecs
# (`exchange.venue.wire`, `wire_fast`) read their fields and field types by introspection, which
# mypyc does not keep (it erases annotations). `exchange/venue/machine.py`: the gateway's
# `ObservedVenueMachine` subclasses `VenueMachine`, and a Python class cannot subclass a mypyc
# native one. The code that builds, reads and runs them is compiled.
PYTHON_MODULES = (
    "matching/commands.py",
    "matching/events.py",
    "settlement/commands.py",
    "settlement/events.py",
    "settlement/supply_chain_types.py",
    "settlement/corporate_action_types.py",
    "exchange/venue/types.py",
    "exchange/venue/machine.py",
)


def compiled_sources(root: Path = ROOT) -> list[Path]:
    """The sources mypyc compiles: every core module but `PYTHON_MODULES` and the packages'
    `__init__.py` (docstrings only: the packages' paths stay the source tree's)."""
    return [
        path
        for path in core_sources(root)
        if path.name != "__init__.py" and path.relative_to(root).as_posix() not in PYTHON_MODULES
    ]


def source_hash(root: Path = ROOT) -> str:
    """SHA-256 over every core source's relative path and bytes."""
    digest = hashlib.sha256()
    for path in core_sources(root):
        data = path.read_bytes()
        name = path.relative_to(root).as_posix().encode()
        digest.update(b"%d:%s\x00%d:" % (len(name), name, len(data)))
        digest.update(data)
    return digest.hexdigest()


def build_root() -> Path:
    """Where compiled builds live: in the virtual environment (`<venv>/jinlian-compiled`), or
    in the user's cache directory when Python runs outside one. Never in the source tree."""
    if sys.prefix != sys.base_prefix:
        return Path(sys.prefix) / "jinlian-compiled"
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "jinlian" / "compiled"


def build_directory(digest: str, root: Path | None = None) -> Path:
    """The build of sources hashing to `digest` for this interpreter's ABI."""
    tag = EXTENSION_SUFFIX.removesuffix(".so").strip(".") or "ext"
    return (root or build_root()) / f"{digest[:32]}-{tag}"


def extension_path(directory: Path, name: str) -> Path:
    """Where the build in `directory` holds the extension module `name`."""
    *packages, module = name.split(".")
    return directory.joinpath(*packages, module + EXTENSION_SUFFIX)


def build_problem(directory: Path, digest: str, modules: Sequence[str]) -> str | None:
    """Why `directory` is not a complete build of the sources hashing to `digest`, or None."""
    manifest = directory / MANIFEST
    if not manifest.is_file():
        return f"no compiled build of sources {digest[:12]} ({directory} has no {MANIFEST})"
    try:
        recorded = json.loads(manifest.read_bytes())
    except (OSError, ValueError) as error:
        return f"{manifest} is unreadable: {error}"
    if not isinstance(recorded, dict) or recorded.get("source_hash") != digest:
        return f"{manifest} records other sources than {digest[:12]}"
    if recorded.get("modules") != list(modules):  # PYTHON_MODULES changed since
        return f"{manifest} records another set of compiled modules"
    for name in (*modules, SHARED_LIBRARY):
        if not extension_path(directory, name).is_file():
            return f"{directory} lacks {name}{EXTENSION_SUFFIX}"
    return None


@dataclass(frozen=True, slots=True)
class Selection:
    """The build one process runs."""

    build: str  # "pure" or "compiled"
    source_hash: str
    directory: Path | None  # the compiled build's directory, None when pure
    reason: str

    def describe(self) -> str:
        """One line: which build, from which sources."""
        if self.build == "compiled":
            return f"build: compiled (mypyc), sources {self.source_hash[:12]}"
        return f"build: pure Python, sources {self.source_hash[:12]} ({self.reason})"


def select(
    environment: Mapping[str, str], root: Path = ROOT, builds: Path | None = None
) -> Selection:
    """The build `environment` asks for, given the sources under `root`."""
    value = environment.get(VARIABLE, "")
    if value not in ("", *CHOICES):
        raise BuildSelectionError(
            f"{VARIABLE}={value!r:.80} is not one of {', '.join(CHOICES)} "
            "(unset: the compiled build when it is fresh, else pure)"
        )
    digest = source_hash(root)
    if value == "pure":
        return Selection("pure", digest, None, f"{VARIABLE}=pure")
    directory = build_directory(digest, builds)
    modules = [module_name(path, root) for path in compiled_sources(root)]
    problem = build_problem(directory, digest, modules)
    if problem is None:
        return Selection("compiled", digest, directory, f"fresh build in {directory}")
    if value == "compiled":
        raise BuildSelectionError(
            f"{VARIABLE}=compiled but {problem}: run `jinlian build` (or `make compiled`)"
        )
    return Selection("pure", digest, None, problem)


class CompiledFinder(importlib.abc.MetaPathFinder):
    """Serves the core's modules from one build, chosen on the first core import.

    Packages and pure modules come from `root`'s sources; with the compiled build, every
    compiled module (and mypyc's shared library) comes from the build directory instead.
    """

    def __init__(
        self,
        environment: Mapping[str, str] | None = None,
        root: Path = ROOT,
        builds: Path | None = None,
    ) -> None:
        self.environment = environment  # None: os.environ when the first core import happens
        self.root = root
        self.builds = builds
        self.sources = {module_name(path, root): path for path in core_sources(root)}
        self.compiled = {module_name(path, root) for path in compiled_sources(root)}
        self._selection: Selection | None = None

    def selection(self) -> Selection:
        """The process's build, decided once; a refused selection exits 2 naming it."""
        if self._selection is None:
            try:
                environment = os.environ if self.environment is None else self.environment
                self._selection = select(environment, self.root, self.builds)
            except BuildSelectionError as error:
                print(f"jinlian: {error}", file=sys.stderr, flush=True)
                raise SystemExit(2) from None
            log.debug("%s: %s", self._selection.describe(), self._selection.reason)
        return self._selection

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname == SHARED_LIBRARY:
            selection = self.selection()
            if selection.directory is None:
                return None
            return importlib.util.spec_from_file_location(
                fullname, extension_path(selection.directory, fullname)
            )
        source = self.sources.get(fullname)
        if source is None:
            return None
        if source.name == "__init__.py":
            return importlib.util.spec_from_file_location(
                fullname, source, submodule_search_locations=[str(source.parent)]
            )
        selection = self.selection()
        if selection.directory is None or fullname not in self.compiled:
            return importlib.util.spec_from_file_location(fullname, source)
        return importlib.util.spec_from_file_location(
            fullname, extension_path(selection.directory, fullname)
        )


def installed() -> CompiledFinder | None:
    return next((f for f in sys.meta_path if isinstance(f, CompiledFinder)), None)


def install() -> None:
    """Put the finder first on `sys.meta_path`, unless it is there already or some of the core
    was imported without it (that process stays on the sources it already runs)."""
    if installed() is not None:
        return
    names = {module_name(path) for path in core_sources()}
    if any(name in sys.modules for name in names):
        return
    sys.meta_path.insert(0, CompiledFinder())


def current() -> Selection:
    """The build this process runs (imports nothing of the core)."""
    finder = installed()
    if finder is not None:
        return finder.selection()
    return Selection("pure", source_hash(), None, "the compiled-build finder is not installed")


def describe() -> str:
    """One line for benchmarks and demos: which build runs, from which sources."""
    return current().describe()
