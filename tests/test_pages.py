"""Pages of memory-mapped stacks (atlasmith._pages): values read a block at a time are those
of the stack, and letting pages go never loses data."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from atlasmith import _pages
from atlasmith.formats import V1Folder, read_stack
from atlasmith.statistics import row_blocks


@pytest.fixture(scope="module")
def annotation(example_atlas_dir: Path) -> np.ndarray:
    stack = V1Folder(example_atlas_dir).annotation
    assert isinstance(stack, np.memmap)
    return stack


@pytest.mark.parametrize("block_bytes", [1, 80 * 114 * 4 * 7, 1 << 26])
@pytest.mark.parametrize("points", [0, 1, 20_000])
def test_gather_equals_take(
    annotation: np.ndarray, monkeypatch: pytest.MonkeyPatch, block_bytes: int, points: int
) -> None:
    """Any block size (one row; 7 rows, the last block short; the whole stack), points in
    random order, repeated, in some blocks only or in all."""
    monkeypatch.setattr(_pages, "_GATHER_BLOCK_BYTES", block_bytes)
    rng = np.random.default_rng(points)
    flat = rng.integers(0, annotation.size, size=points)
    flat[: points // 2] = flat[: points // 2] % (annotation[0].size * 30)  # crowd some blocks
    expected = np.asarray(annotation).reshape(-1).take(flat)
    found = _pages.gather(annotation, flat)
    assert found.dtype == annotation.dtype
    np.testing.assert_array_equal(found, expected)


def test_row_blocks_of_a_memory_map_are_its_rows(annotation: np.ndarray) -> None:
    blocks = list(row_blocks(annotation, voxels=80 * 114 * 10))
    assert [start for start, _ in blocks] == list(range(0, 132, 10))
    # kept past their turn (their pages were let go): read again from the file
    np.testing.assert_array_equal(np.concatenate([b for _, b in blocks]), annotation)


@pytest.mark.parametrize("mode", ["r+", "c"])
def test_letting_pages_go_keeps_what_was_written(tmp_path: Path, mode: str) -> None:
    """A shared mapping's written pages reach the file; a copy-on-write one's are never let
    go (they would be lost)."""
    path = tmp_path / "stack.npy"
    np.save(path, np.zeros((4, 1024, 8), dtype=np.uint32))
    stack = np.load(path, mmap_mode=mode)
    stack[1:3] = 5
    _pages.release_rows(stack, 0, 4)
    assert (stack[1:3] == 5).all()
    assert (stack[0] == 0).all()
    if mode == "r+":
        stack.flush()
        assert (np.load(path)[1:3] == 5).all()


def test_other_arrays_are_left_alone() -> None:
    array = np.arange(24).reshape(2, 3, 4)
    _pages.map_rows(array, 0, 2)
    _pages.prefetch_rows(array, 0, 2)
    _pages.release_rows(array, 0, 2)
    np.testing.assert_array_equal(array, np.arange(24).reshape(2, 3, 4))


def _mapped_kb(path: Path) -> int:
    """Resident kB of this process's mappings of ``path`` (/proc/self/smaps)."""
    total, inside = 0, False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            if "-" in line.split()[0] and len(line.split()) >= 5:
                inside = line.rstrip().endswith(str(path))
            elif inside and line.startswith("Rss:"):
                total += int(line.split()[1])
    return total


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="needs Linux's smaps")
def test_releasing_reads_read_the_same_and_let_the_rows_go(tmp_path: Path) -> None:
    """Reads of whole rows let their rows go (so do the last chunks of row ranges)."""
    path = tmp_path / "stack.npy"
    data = np.arange(64 * 64 * 256, dtype=np.uint32).reshape(64, 64, 256)
    np.save(path, data)
    stack = np.load(path, mmap_mode="r")
    reads = _pages.releasing_reads(stack)
    assert isinstance(reads, _pages.ReleasingReads)
    assert (reads.shape, reads.dtype, len(reads)) == (stack.shape, stack.dtype, 64)
    for start in range(0, 64, 16):
        np.testing.assert_array_equal(reads[start : start + 16], data[start : start + 16])
    assert _mapped_kb(path) < 64  # every row was let go after its read (4 MB read)
    chunk = (slice(0, 16), slice(32, 64), slice(128, 256))
    np.testing.assert_array_equal(reads[chunk], data[chunk])
    np.testing.assert_array_equal(reads[5, 3], data[5, 3])
    # (the pages mapped after a chunk depend on the kernel's folio sizes: the rule alone)
    assert _pages._rows_ended(chunk, stack.shape) == (0, 16)
    assert _pages._rows_ended((slice(0, 16), slice(0, 32)), stack.shape) is None
    assert _pages._rows_ended((5, 3), stack.shape) is None
    assert _pages._rows_ended(slice(0, 64, 2), stack.shape) is None
    assert _pages.releasing_reads(data) is data  # in memory: nothing to let go


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="needs Linux's smaps")
def test_the_mesh_slabs_let_a_mapped_annotation_go(example_atlas_dir: Path, tmp_path: Path) -> None:
    """The engine's slabs read from a memory-mapped annotation (unclosed: it is never
    compacted in memory) let its rows go once copied, and read what an in-memory copy
    holds: a worker that kept them grew by every row it read (3.4 GB each at 10 um)."""
    from atlasmith.meshes._runner import LocalRunner
    from atlasmith.meshes._surface import SlabInputs, plan_slabs, slab_labels, slab_surfaces

    tree = V1Folder(example_atlas_dir).tree
    path = tmp_path / "annotation.tiff"  # a copy that only this test maps
    shutil.copyfile(example_atlas_dir / "annotation.tiff", path)
    stack = read_stack(path)
    assert isinstance(stack, np.memmap)
    copy = np.array(stack)  # maps every page of the file (4.8 MB)...
    assert _mapped_kb(path) > 4_000
    _pages.release_rows(stack, 0, len(stack))  # ...let go before the slabs read it
    assert _mapped_kb(path) < 64
    mapped, in_memory = SlabInputs(stack, False, tree, 2), SlabInputs(copy, False, tree, 2)
    # a read maps the kernel's read-around beyond its rows, which stays (a few hundred kB):
    # the bound is half the file, which every slab's rows kept mapped made whole
    bound = 0.5 * stack.nbytes / 1024
    for slab in plan_slabs(stack.shape, 1, 3, None, None):
        np.testing.assert_array_equal(slab_labels(mapped, slab), slab_labels(in_memory, slab))
        assert _mapped_kb(path) < bound, slab
    parts = slab_surfaces(mapped, LocalRunner(1))
    assert sum(len(part.faces) for part in parts) > 100_000  # the whole Allen surface was made
    assert _mapped_kb(path) < bound


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="needs Linux's smaps")
@pytest.mark.parametrize("block_rows", [7, 1000])
@pytest.mark.parametrize("name", ["annotation", "reference"])
def test_a_mapped_stack_is_written_a_block_at_a_time(
    example_atlas_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    block_rows: int,
    name: str,
) -> None:
    """A memory-mapped stack is written with the very bytes of one write of the whole
    array (7 rows a block, the last one short; all at once), and its pages let go."""
    from atlasmith.formats import _tiff

    path = tmp_path / f"{name}.tiff"  # a copy that only this test maps
    shutil.copyfile(example_atlas_dir / f"{name}.tiff", path)
    stack = read_stack(path)
    assert isinstance(stack, np.memmap)
    monkeypatch.setattr(_tiff, "_WRITE_BLOCK_VOXELS", block_rows * stack[0].size)
    whole = tmp_path / "whole.tiff"
    _tiff.write_stack(whole, np.array(stack))  # in memory: one write
    _pages.release_rows(stack, 0, len(stack))
    assert _mapped_kb(path) < 64
    blocks = tmp_path / "blocks.tiff"
    _tiff.write_stack(blocks, stack)
    assert blocks.read_bytes() == whole.read_bytes()
    assert _mapped_kb(path) < 0.5 * stack.nbytes / 1024  # every block let go (read-around stays)
    np.testing.assert_array_equal(read_stack(blocks), stack)


def test_a_mapped_stack_over_4_gib_is_written_as_bigtiff(
    example_atlas_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Written a block at a time, tifffile cannot see the stack's size: past a classic
    TIFF's 4 GiB (here lowered to 1 MB) the stack is written as BigTIFF, with the bytes
    tifffile writes for the whole array, and read back memory-mapped."""
    import tifffile

    from atlasmith.formats import _tiff

    path = tmp_path / "annotation.tiff"
    shutil.copyfile(example_atlas_dir / "annotation.tiff", path)
    stack = read_stack(path)
    assert isinstance(stack, np.memmap)
    monkeypatch.setattr(_tiff, "_BIGTIFF_BYTES", 1 << 20)
    blocks = tmp_path / "blocks.tiff"
    _tiff.write_stack(blocks, stack)
    with tifffile.TiffFile(blocks) as tiff:
        assert tiff.is_bigtiff
    whole = tmp_path / "whole.tiff"
    tifffile.imwrite(whole, np.array(stack), bigtiff=True)
    assert blocks.read_bytes() == whole.read_bytes()
    again = read_stack(blocks)
    assert isinstance(again, np.memmap)
    np.testing.assert_array_equal(again, stack)
