import importlib

import atlasmith


def test_all_is_sorted_and_complete() -> None:
    assert atlasmith.__all__ == sorted(atlasmith.__all__)
    for name in atlasmith.__all__:
        if name != "__version__":
            assert getattr(atlasmith, name) is not None


def test_errors_subclass_builtins() -> None:
    errors = importlib.import_module("atlasmith.errors")
    assert issubclass(errors.StructureNotFoundError, KeyError)
    assert issubclass(errors.CoordinateError, IndexError)
    assert issubclass(errors.AtlasExistsError, FileExistsError)
    import meshio

    assert issubclass(errors.MeshError, meshio.ReadError)
