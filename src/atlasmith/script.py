"""Atlas scripts: load a packager's Python module and parse it into a frozen description.

An atlas script is a Python module with BrainGlobe's metadata constants and loader functions:

=========================  ==================================================================
constant                   meaning
=========================  ==================================================================
``__version__``            int, the minor data version (the package is ``v1.<minor>``)
``ATLAS_NAME``             ``author_species``: lowercase letters, digits, ``.``, ``-``, ``_``
``SPECIES``                scientific name, e.g. ``"Mus musculus"``
``ATLAS_LINK``             http(s) URL of the atlas
``CITATION``               text with a DOI (``https://doi.org/...`` or ``doi:...``) or exactly
                           ``"unpublished"``
``ATLAS_PACKAGER``         who packaged it
``ORIENTATION``            brainglobe-space origin of the *source* stacks (e.g. ``"lpi"``)
``ROOT_ID``                id of the root structure
``RES_UM``                 voxel size in um, a number or a 3-tuple in "asr" order
``RESOLUTIONS``            optional list of resolutions the script can build; first = default
                           and equal to ``RES_UM``
``LICENSE``                optional, the data's terms
``SOURCES``                optional ``{key: Source(path, sha256, url=None)}``
``MESH_PARAMETERS``        optional dict of :class:`atlasmith.meshes.MeshParameters` fields
=========================  ==================================================================

Loaders take one argument, a :class:`ScriptContext` (the chosen resolution and verified source
paths): ``load_reference(ctx)`` and ``load_annotation(ctx)`` return 3D arrays in ``ORIENTATION``,
``load_structures(ctx)`` a list of dicts (acronym, id, name, structure_id_path, rgb_triplet);
optional ``load_hemispheres(ctx)`` (values 0, 1 left, 2 right), ``load_additional_references(ctx)
-> dict[str, ndarray]`` and ``load_meshes(ctx) -> dict[int, Path]`` (meshes in um in the source
orientation; when absent, meshes are generated from the annotation).
"""

from __future__ import annotations

import importlib.util
import math
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType, ModuleType
from typing import Any

from atlasmith._types import PathLike
from atlasmith.errors import AtlasmithError, OrientationError, ScriptError, SourceError
from atlasmith.metadata import check_citation
from atlasmith.names import check_base_name, format_resolution
from atlasmith.sources import Source, SourceResolver

__all__ = [
    "AtlasScript",
    "ScriptContext",
    "as_resolution",
    "load_script",
    "make_context",
    "write_script_template",
]

Resolution = tuple[float, float, float]

REQUIRED_CONSTANTS = (
    "__version__",
    "ATLAS_NAME",
    "SPECIES",
    "ATLAS_LINK",
    "CITATION",
    "ATLAS_PACKAGER",
    "ORIENTATION",
    "ROOT_ID",
    "RES_UM",
)
REQUIRED_LOADERS = ("load_reference", "load_annotation", "load_structures")
OPTIONAL_LOADERS = ("load_hemispheres", "load_additional_references", "load_meshes")


@dataclass(frozen=True)
class ScriptContext:
    """What a loader gets: the chosen resolution and access to the verified source files.

    Attributes
    ----------
    resolution : tuple of 3 floats
        Voxel size in um, "asr" order, of the package being built.
    script_dir : Path
        Folder of the script (for files a script ships next to itself).
    """

    resolution: Resolution
    script_dir: Path
    resolver: SourceResolver

    @property
    def resolution_um(self) -> float:
        """Resolution on axis 0 (the one in the atlas name), in um."""
        return self.resolution[0]

    def source(self, key: str) -> Path:
        """Path of declared source ``key``, found and checked against its sha256."""
        return self.resolver.path(key)


@dataclass(frozen=True)
class AtlasScript:
    """A loaded atlas script, its constants parsed and checked."""

    path: Path
    name: str
    species: str
    atlas_link: str
    citation: str
    packager: str
    orientation: str
    root_id: int
    resolutions: tuple[Resolution, ...]
    minor_version: int
    license: str | None
    sources: Mapping[str, Source]
    mesh_parameters: Mapping[str, Any]
    loaders: Mapping[str, Callable[..., Any]] = field(repr=False)

    @property
    def version(self) -> str:
        """Atlas data version, ``"1.<minor>"``."""
        return f"1.{self.minor_version}"

    @property
    def default_resolution(self) -> Resolution:
        """The first (default) resolution."""
        return self.resolutions[0]

    def pick_resolution(self, um: float | None) -> Resolution:
        """Return the offered resolution whose axis-0 value is ``um`` (default when None)."""
        if um is None:
            return self.default_resolution
        for res in self.resolutions:
            if math.isclose(res[0], float(um)):
                return res
        offered = [format_resolution(r[0]) for r in self.resolutions]
        raise ScriptError(
            f"script {self.path.name} cannot build at {um} um; it offers {offered} um "
            "(RESOLUTIONS). Pick one of those with --resolution."
        )

    def call(self, loader: str, ctx: ScriptContext) -> Any:
        """Run a loader; errors other than atlasmith's become a ScriptError naming it."""
        function = self.loaders[loader]
        try:
            return function(ctx)
        except AtlasmithError:
            raise
        except Exception as err:
            raise ScriptError(
                f"{loader}() of atlas script {self.path} failed: {type(err).__name__}: {err}. "
                "Fix the loader (run it on its own to debug)."
            ) from err

    def has(self, loader: str) -> bool:
        """True when the script defines ``loader``."""
        return loader in self.loaders


def load_script(path: PathLike) -> AtlasScript:
    """Import an atlas script and parse its constants and loaders.

    Parameters
    ----------
    path : str or Path
        The script file (``atlas_scripts/allen_mouse.py``).

    Raises
    ------
    ScriptError
        The file is missing, does not import, lacks a constant or loader, or a constant has a
        wrong value (each message names the constant, what was expected and what was found).
        Every constant is checked first: several problems come as one ScriptError, one line
        each.
    OrientationError
        ``ORIENTATION`` is not a valid brainglobe-space origin (and is the only problem).
    """
    module = _import(Path(path))
    return parse_module(module, Path(path).resolve())


def _import(path: Path) -> ModuleType:
    if not path.is_file():
        raise ScriptError(f"atlas script {path} does not exist. Check the path.")
    module_name = f"_atlasmith_script_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ScriptError(f"atlas script {path} cannot be imported: is it a .py file?")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses in scripts need their module registered
    try:
        spec.loader.exec_module(module)
    except AtlasmithError:
        raise
    except Exception as err:
        raise ScriptError(
            f"atlas script {path} failed to import: {type(err).__name__}: {err}."
        ) from err
    finally:
        sys.modules.pop(module_name, None)
    return module


def parse_module(module: ModuleType, path: Path) -> AtlasScript:
    """Parse the constants and loaders of an imported script module.

    Every constant is checked before anything is raised, so a script with several mistakes
    gets them all in one error (one line each) instead of one per build.
    """
    ns = vars(module)
    problems = _Problems()
    missing = [name for name in REQUIRED_CONSTANTS if name not in ns]
    missing += [name for name in REQUIRED_LOADERS if not callable(ns.get(name))]
    if missing:
        problems.add(
            ScriptError(
                f"atlas script {path} lacks {missing}. Every script defines the constants "
                f"{list(REQUIRED_CONSTANTS)} and the loaders {list(REQUIRED_LOADERS)}; start "
                "from `atlasmith new-script NAME`."
            )
        )
    parsed = {
        key: problems.check(parse, ns)
        for key, (constant, parse) in _FIELDS.items()
        if constant is None or constant in ns  # a missing constant is reported above
    }
    problems.raise_any(path)
    return AtlasScript(
        path=path,
        **parsed,
        loaders=MappingProxyType(
            {n: ns[n] for n in REQUIRED_LOADERS + OPTIONAL_LOADERS if callable(ns.get(n))}
        ),
    )


class _Problems:
    """The constant problems of one script, gathered so that all are reported at once."""

    def __init__(self) -> None:
        self.errors: list[ScriptError | OrientationError] = []

    def add(self, error: ScriptError | OrientationError) -> None:
        self.errors.append(error)

    def check(self, parse: Callable[[Mapping[str, Any]], Any], ns: Mapping[str, Any]) -> Any:
        """Run one constant's parser; record its error instead of raising it."""
        try:
            return parse(ns)
        except (ScriptError, OrientationError) as err:
            self.add(err)
            return None

    def raise_any(self, path: Path) -> None:
        """Raise the one problem as it is (its own type), or a ScriptError listing them all."""
        if len(self.errors) == 1:
            raise self.errors[0]
        if self.errors:
            lines = "\n".join(f"  - {err}" for err in self.errors)
            raise ScriptError(
                f"atlas script {path} has {len(self.errors)} problems:\n{lines}\n"
                "Fix them all, then build again."
            ) from self.errors[0]


def _bad(name: str, expected: str, got: object) -> ScriptError:
    return ScriptError(f"script constant {name}: expected {expected}, got {got!r}.")


def _text(ns: Mapping[str, Any], name: str) -> str:
    value = ns[name]
    if not isinstance(value, str) or not value.strip():
        raise _bad(name, "a non-empty string", value)
    return value


def _optional_text(ns: Mapping[str, Any], name: str) -> str | None:
    return None if ns.get(name) is None else _text(ns, name)


def _link(value: object) -> str:
    if not isinstance(value, str) or not re.match(r"^https?://\S+$", value):
        raise _bad("ATLAS_LINK", "an http(s) URL such as 'https://www.brain-map.org'", value)
    return value


def _orientation(value: object) -> str:
    from atlasmith.orientation import check_origin

    if not isinstance(value, str):
        raise _bad("ORIENTATION", "a brainglobe-space origin string such as 'asr'", value)
    return check_origin(value)


def _root_id(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 2**32:
        raise _bad("ROOT_ID", "a positive integer below 2**32 (0 means 'no structure')", value)
    return value


def _minor(value: object) -> int:
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _bad("__version__", "a non-negative int, the minor data version (0 for new)", value)
    return value


def as_resolution(value: object, name: str = "RES_UM") -> Resolution:
    """Parse a resolution (a number or 3 numbers, um, positive and finite) into a 3-tuple."""
    items: list[Any] = list(value) if isinstance(value, list | tuple) else [value] * 3
    ok = len(items) == 3 and all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v > 0
        for v in items
    )
    if not ok:
        raise _bad(name, "a positive number of um, or 3 of them (asr order)", value)
    return (float(items[0]), float(items[1]), float(items[2]))


def _resolutions(ns: Mapping[str, Any]) -> tuple[Resolution, ...]:
    default = as_resolution(ns["RES_UM"])
    offered = ns.get("RESOLUTIONS")
    if offered is None:
        return (default,)
    if not isinstance(offered, list | tuple) or not offered:
        raise _bad("RESOLUTIONS", "a non-empty list of resolutions", offered)
    parsed = tuple(as_resolution(v, "RESOLUTIONS") for v in offered)
    if parsed[0] != default:
        raise _bad(
            "RESOLUTIONS", f"a list whose first entry equals RES_UM ({ns['RES_UM']!r})", offered
        )
    return parsed


def _sources(value: object) -> dict[str, Source]:
    if not isinstance(value, Mapping):
        raise _bad("SOURCES", "a dict {key: Source(path, sha256=...)}", value)
    bad = {k: v for k, v in value.items() if not (isinstance(k, str) and isinstance(v, Source))}
    if bad:  # name every bad entry, not the whole (long) dict
        raise _bad("SOURCES", "string keys with Source(path, sha256=...) values", bad)
    return dict(value)


def _mapping(ns: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = ns.get(name, {})
    if not isinstance(value, Mapping):
        raise _bad(name, "a dict", value)
    return dict(value)


# AtlasScript field -> (the constant it needs, None when optional; its parser)
_FIELDS: dict[str, tuple[str | None, Callable[[Mapping[str, Any]], Any]]] = {
    "name": ("ATLAS_NAME", lambda ns: check_base_name(ns["ATLAS_NAME"])),
    "species": ("SPECIES", lambda ns: _text(ns, "SPECIES")),
    "atlas_link": ("ATLAS_LINK", lambda ns: _link(ns["ATLAS_LINK"])),
    "citation": ("CITATION", lambda ns: check_citation(ns["CITATION"])),
    "packager": ("ATLAS_PACKAGER", lambda ns: _text(ns, "ATLAS_PACKAGER")),
    "orientation": ("ORIENTATION", lambda ns: _orientation(ns["ORIENTATION"])),
    "root_id": ("ROOT_ID", lambda ns: _root_id(ns["ROOT_ID"])),
    "resolutions": ("RES_UM", _resolutions),
    "minor_version": ("__version__", lambda ns: _minor(ns["__version__"])),
    "license": (None, lambda ns: _optional_text(ns, "LICENSE")),
    "sources": (None, lambda ns: MappingProxyType(_sources(ns.get("SOURCES", {})))),
    "mesh_parameters": (None, lambda ns: MappingProxyType(_mapping(ns, "MESH_PARAMETERS"))),
}


def make_context(
    script: AtlasScript, resolution: Resolution, source_dir: Path | None
) -> ScriptContext:
    """Build the loaders' context: search ``source_dir``, the script's folder and its project."""
    script_dir = script.path.parent
    if source_dir is not None and not Path(source_dir).is_dir():
        raise SourceError(
            f"--source-dir {source_dir} does not exist or is not a folder: give the folder "
            "that holds the script's sources under the paths its SOURCES declare."
        )
    search = [Path(source_dir)] if source_dir is not None else []
    search += [script_dir, script_dir.parent, script_dir.parent / "data"]
    resolver = SourceResolver(script.sources, search)
    return ScriptContext(resolution=resolution, script_dir=script_dir, resolver=resolver)


def write_script_template(name: str, out_dir: str | Path = ".") -> Path:
    """Write a commented atlas script template ``out_dir/<name>.py`` and return its path.

    ``name`` is the atlas's ``author_species`` name, with or without ``.py``.

    Raises
    ------
    ScriptError
        ``name`` is not a valid ``author_species`` atlas name.
    AtlasExistsError
        The file already exists.
    """
    from importlib.resources import files

    from atlasmith.errors import AtlasExistsError

    name = name.removesuffix(".py")  # `new-script doe_rat.py` means the file doe_rat.py
    check_base_name(name, "the new script's name")
    target = Path(out_dir) / f"{name}.py"
    if target.exists():
        raise AtlasExistsError(f"{target} already exists: choose another name or folder.")
    template = files("atlasmith").joinpath("templates/atlas_script.py.txt").read_text("utf-8")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(template.format(name=name), encoding="utf-8")
    return target
