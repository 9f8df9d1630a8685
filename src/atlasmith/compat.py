"""BrainGlobe 2.3.1's atlas-generation functions, so BrainGlobe-style scripts run on atlasmith.

Change the imports of a BrainGlobe atlas script::

    from brainglobe_atlasapi.atlas_generation.mesh_utils import construct_meshes_from_annotation
    from brainglobe_atlasapi.atlas_generation.wrapup import wrapup_atlas_from_data

to ``from atlasmith.compat import construct_meshes_from_annotation, wrapup_atlas_from_data``
and it builds the same package, with these fixes of BrainGlobe 2.3.1's behaviour:

- validation is a gate: a package that fails a check raises
  :class:`~atlasmith.errors.ValidationError` and nothing is left behind (BrainGlobe prints the
  failures and ships the package anyway);
- ``compress=False`` works and returns the folder (BrainGlobe raises ``UnboundLocalError``);
- no network: ``atlas_link`` is not fetched;
- meshes are placed on the voxel grid of the stacks (voxel ``i`` at ``i * resolution`` after
  reorientation; BrainGlobe's flip is one voxel off);
- the archive is byte-reproducible and carries a ``manifest.json`` with every file's sha256;
- an empty ``meshes_dict`` makes atlasmith generate the meshes from the annotation.

As in BrainGlobe 2.3.1, existing output with ``overwrite=False`` is refused first
(FileExistsError, before any input is read), and :func:`construct_meshes_from_annotation` writes
``save_path/meshes/<id>.obj`` for the structures of the tree 2.3.1 grows from the structure list
(from the structure with acronym ``"root"``, each entry under ``structure_id_path[-2]``).

For BrainGlobe 3 (brainglobe-atlasapi 3.x) users, :func:`use_repository` points its own,
unmodified client at an atlasmith repository. Importing this module is cheap (the build
machinery loads when a function needs it), so it can be imported where only BrainGlobe 3 is
installed.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from atlasmith._bg3 import environment, use_repository
from atlasmith.errors import AtlasExistsError, HierarchyError, MetadataError, ScriptError

__all__ = [
    "construct_meshes_from_annotation",
    "environment",
    "use_repository",
    "wrapup_atlas_from_data",
]

_MIN_KEEP = 0.05  # decimate_fraction 0 ("reduce as much as possible") keeps 5% of triangles
_CLUSTER_VOXELS = 2.0  # vertex-clustering block, in voxels (meshes are made in voxel units)


def wrapup_atlas_from_data(
    atlas_name: str,
    atlas_minor_version: int | str,
    citation: str,
    atlas_link: str,
    species: str,
    resolution: Sequence[float],
    orientation: str | Sequence[str],
    root_id: int,
    reference_stack: Any,
    annotation_stack: Any,
    structures_list: list[dict[str, Any]],
    meshes_dict: Mapping[int, str | Path] | None,
    working_dir: str | Path,
    atlas_packager: str | None = None,
    hemispheres_stack: Any = None,
    cleanup_files: bool = False,
    compress: bool = True,
    scale_meshes: bool = False,
    resolution_mapping: Sequence[int] | None = None,
    additional_references: Mapping[str, Any] | None = None,
    additional_metadata: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Package atlas data into a validated BrainGlobe-format folder (and ``.tar.gz``).

    Same signature and meaning as BrainGlobe 2.3.1's function (see the module docstring for
    the differences).

    Parameters
    ----------
    atlas_name : str
        ``author_species``.
    atlas_minor_version : int or str
        Minor data version (the package is ``v1.<minor>``).
    citation, atlas_link, species : str
        Credits; the citation holds a DOI or is ``"unpublished"``.
    resolution : sequence of 3 floats
        Voxel size in um, in "asr" order.
    orientation : str or sequence of str
        brainglobe-space origin of the source stacks.
    root_id : int
        Id of the root structure.
    reference_stack, annotation_stack : ndarray, str or Path
        Stacks (paths are read with tifffile), in ``orientation``.
    structures_list : list of dict
        BrainGlobe structures.
    meshes_dict : dict of int to path
        Mesh files (um, or voxel units with ``scale_meshes``), in ``orientation``; empty or
        None to generate them.
    working_dir : str or Path
        Where the folder and the archive are written.
    atlas_packager : str, optional
    hemispheres_stack : ndarray, str or Path, optional
        1 left, 2 right (0 none); when given, the atlas is asymmetric.
    cleanup_files : bool
        Remove the folder after making the archive.
    compress : bool
        Make the ``.tar.gz``.
    scale_meshes : bool
        Multiply mesh points by the resolution (meshes in voxel units).
    resolution_mapping : sequence of 3 ints, optional
        Source axis ``k`` has resolution ``resolution[resolution_mapping[k]]`` (anisotropic
        voxels); by default it is derived from ``orientation``.
    additional_references : dict of str to ndarray, optional
    additional_metadata : dict, optional
        Extra keys for metadata.json.
    overwrite : bool
        Replace an existing output instead of raising AtlasExistsError (a FileExistsError).

    Returns
    -------
    Path
        The archive when ``compress``, else the folder.

    Raises
    ------
    AtlasExistsError
        (a FileExistsError, as BrainGlobe raises) when the folder (or, with ``compress``, the
        archive) exists and ``overwrite`` is False; checked first, as BrainGlobe checks it.
    ValidationError, HierarchyError, ScriptError, MetadataError
        (ValueErrors) for inputs that cannot make a valid package.
    """
    if not overwrite:
        _refuse_existing(
            _outputs(atlas_name, resolution, atlas_minor_version, working_dir, compress)
        )
    from atlasmith.build import write_package
    from atlasmith.inputs import RawAtlas, prepare_inputs
    from atlasmith.orientation import check_origin

    raw = RawAtlas(
        name=atlas_name,
        citation=citation,
        atlas_link=atlas_link,
        species=species,
        packager=atlas_packager,
        orientation=check_origin(orientation),
        root_id=int(root_id),
        resolution=(float(resolution[0]), float(resolution[1]), float(resolution[2])),
        minor_version=atlas_minor_version,
        reference=reference_stack,
        annotation=annotation_stack,
        structures=structures_list,
        hemispheres=hemispheres_stack,
        additional_references=dict(additional_references or {}),
        meshes={int(k): Path(v) for k, v in meshes_dict.items()} if meshes_dict else None,
        scale_meshes=scale_meshes,
        mesh_source_resolution=(
            None
            if resolution_mapping is None
            else tuple(float(resolution[int(i)]) for i in resolution_mapping)
        ),
        extra_metadata=dict(additional_metadata or {}),
    )
    inputs = prepare_inputs(raw)
    result = write_package(
        inputs,
        working_dir,
        build_info={"compat": "wrapup_atlas_from_data"},
        overwrite=overwrite,
        compress=compress,
        formats="v1",  # BrainGlobe 2.3.1's function makes the v1.2 package only
    )
    assert result.folder is not None  # format v1 always has its folder
    if result.archive is None:
        return result.folder
    if cleanup_files:
        shutil.rmtree(result.folder)
    return result.archive


def _outputs(
    name: Any, resolution: Any, minor: Any, working_dir: str | Path, compress: bool
) -> list[Path]:
    """The folder (and archive) this call would write, named as the build names them; []
    when no valid name can be made from these inputs (their checks then say why)."""
    from atlasmith.names import ARCHIVE_SUFFIX, atlas_name, folder_name, split_folder_name

    try:
        folder = folder_name(atlas_name(str(name), float(resolution[0])), f"1.{minor}")
    except (TypeError, ValueError, IndexError, KeyError, MetadataError):
        return []
    if split_folder_name(folder) is None:  # not a folder name (e.g. a '/' in it): no path
        return []
    out = Path(working_dir)
    return [out / folder, *([out / f"{folder}{ARCHIVE_SUFFIX}"] if compress else [])]


def _refuse_existing(targets: Sequence[Path]) -> None:
    existing = [str(t) for t in targets if t.exists()]
    if existing:
        raise AtlasExistsError(
            f"Atlas output already exists at {', '.join(existing)}. Pass overwrite=True to "
            "replace it, or choose another working_dir."
        )


def construct_meshes_from_annotation(
    save_path: str | Path,
    volume: Any,
    structures_list: list[dict[str, Any]],
    closing_n_iters: int = 2,
    decimate_fraction: float = 0,
    smooth: bool = False,
    parallel: bool = True,
    num_threads: int = -1,
    verbosity: int = 0,
) -> dict[int, Path]:
    """Generate one mesh per structure with voxels, in voxel units, as BrainGlobe 2.3.1 does.

    Meshes are written as ``save_path/meshes/<id>.obj`` (the ``meshes`` folder is made;
    existing files are replaced) with vertices in voxel index units and the axes of
    ``volume``; pass them to :func:`wrapup_atlas_from_data` with ``scale_meshes=True``.

    The structures meshed are those of the tree BrainGlobe 2.3.1 grows from the list: from the
    structure with acronym ``"root"`` (else the one whose path is one id long), each entry is
    a child of ``structure_id_path[-2]``, in list order; the path's other ids are not read
    (``[999, 999, 101]`` is a child of 999), entries the tree does not reach are ignored, and
    a structure is meshed when it or a descendant has voxels. atlasmith's engine
    (:func:`atlasmith.meshes.generate_meshes`) makes them: ``closing_n_iters`` is its closing,
    ``decimate_fraction`` the fraction kept (0, "as much as possible", keeps 5%), ``smooth``
    turns its smoothing on; vertices are clustered in blocks of 2 voxels (the resolution is
    not known here) and smoothed over as many blocks as the defaults do. Labels that have no
    structure are ignored, as BrainGlobe does.

    Returns
    -------
    dict of int to Path
        Structure id to its mesh file, in the order of ``structures_list`` (BrainGlobe's).

    Raises
    ------
    ScriptError
        ``num_threads`` is 0 (a ValueError, as in BrainGlobe).
    AtlasExistsError
        ``save_path`` is not an existing folder.
    HierarchyError
        No root can be found, or an id is reached twice (BrainGlobe: treelib's error).
    """
    import numpy as np

    from atlasmith.hierarchy import StructureTree
    from atlasmith.meshes import MeshParameters, generate_meshes
    from atlasmith.meshes._parameters import SMOOTHING_UM

    if num_threads == 0:
        raise ScriptError("num_threads must be -1 (automatic) or a positive number, not 0.")
    target = Path(save_path)
    if not target.is_dir():
        raise AtlasExistsError(f"save_path {target} is not an existing folder: create it first.")
    tree = StructureTree.from_list(_as_brainglobe_tree(structures_list))
    labels = np.asarray(volume)
    labels = np.where(np.asarray(tree.compact(labels)) == 0, 0, labels).astype(np.uint32)
    keep = decimate_fraction if 0 < decimate_fraction <= 1 else _MIN_KEEP
    defaults = MeshParameters()
    # as many clustering blocks as the defaults smooth over (where a block is cluster_um)
    smoothing = SMOOTHING_UM / defaults.cluster_um * _CLUSTER_VOXELS
    params = MeshParameters(
        smoothing_um=smoothing if smooth else 0.0,
        cluster_um=_CLUSTER_VOXELS,  # the meshes are made at 1 "um" per voxel
        decimate=keep,
        closing=int(closing_n_iters),
    )
    workers = 1 if not parallel else (None if num_threads < 0 else num_threads)
    kept, _ = tree.present(np.unique(labels[labels != 0]).tolist())
    meshes_dir = target / "meshes"  # BrainGlobe 2.3.1's place
    meshes_dir.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target, prefix=".meshes-") as tmp:
        made = generate_meshes(
            labels, kept, 1.0, Path(tmp) / "meshes", params=params, workers=workers
        )
        for path in made.values():
            shutil.move(str(path), meshes_dir / path.name)
    listed = [int(s["id"]) for s in structures_list if int(s["id"]) in made]
    return {sid: meshes_dir / made[sid].name for sid in listed}


def _as_brainglobe_tree(structures_list: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The structures of the tree BrainGlobe 2.3.1 grows from a list (``get_structures_tree``),
    as a list atlasmith's StructureTree accepts: paths rebuilt from the root through each
    entry's parent (``structure_id_path[-2]``), unreached entries left out."""
    entries = [_mesh_entry(i, s) for i, s in enumerate(structures_list)]
    children: dict[Any, list[dict[str, Any]]] = {}
    for entry in entries:
        if len(entry["structure_id_path"]) > 1:
            children.setdefault(entry["structure_id_path"][-2], []).append(entry)
    root = _brainglobe_root(entries)
    found, seen, stack = [], {root["id"]}, [(root, [root["id"]])]
    while stack:  # depth first, children in list order (the order BrainGlobe adds them)
        entry, path = stack.pop()
        found.append((entry, path))
        for child in reversed(children.get(entry["id"], [])):
            if child["id"] in seen:
                raise HierarchyError(
                    f"structure id {child['id']} ({child['acronym']!r}) is reached twice from "
                    "the root: each id must appear once under its parent "
                    "(structure_id_path[-2]). Remove or renumber the duplicate."
                )
            seen.add(child["id"])
            stack.append((child, [*path, child["id"]]))
    acronyms = [str(e["acronym"]) for e, _ in found]
    return [
        {
            "acronym": acronym if acronyms.count(acronym) == 1 else f"{acronym} ({e['id']})",
            "id": e["id"],
            "name": str(e.get("name") or acronym),
            "structure_id_path": path,
            "rgb_triplet": [255, 255, 255],
        }
        for (e, path), acronym in zip(found, acronyms, strict=True)
    ]


def _mesh_entry(i: int, entry: Any) -> dict[str, Any]:
    """One entry of the structure list, with the keys meshing reads (as BrainGlobe reads them)."""
    path = entry.get("structure_id_path") if isinstance(entry, Mapping) else None
    if not isinstance(path, list | tuple) or not path or "id" not in entry:
        raise HierarchyError(
            f"structures_list[{i}] must be a dict with an 'id', an 'acronym' and a non-empty "
            f"'structure_id_path' list (BrainGlobe's structure), got {entry!r}."
        )
    return {**entry, "acronym": entry.get("acronym") or str(entry["id"])}


def _brainglobe_root(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """BrainGlobe's root: the (last) entry with acronym "root"; else, as atlasmith's tree
    rules have it, the one entry whose path is one id long."""
    named = [e for e in entries if e["acronym"] == "root"]
    alone = [e for e in entries if len(e["structure_id_path"]) == 1]
    if named or len(alone) == 1:
        return named[-1] if named else alone[0]
    raise HierarchyError(
        "structures_list has no root: give one structure the acronym 'root' (BrainGlobe "
        "grows the tree from it), or exactly one structure a structure_id_path of one id."
    )
