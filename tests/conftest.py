"""Shared fixtures: the real data, the phantom datasets, a DICOM writer, the fault tree.

Keep this file additive: each fixture is independent of the others.  Plain
helpers (the DICOM writer, the fault tree's builder, :class:`Traced`) live
in helpers.py, which test modules import directly.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# Re-exported for test modules written before helpers.py (``from conftest import ...``).
from helpers import (  # noqa: F401
    I_SQUARE,
    LOADER_PHANTOM,
    O_ELSEWHERE,
    O_SQUARE,
    REAL_DATA,
    REAL_DATA_REASON,
    SHAPE,
    FaultTree,
    Traced,
    build_fault_tree,
    children,
    contour_name,
    insert_before_pixels,
    segments,
    tiny_elements,
    write_dicom,
)

from dicontour.phantom import write_phantom


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The real dataset root; skips the test where it is absent (a user's fresh clone)."""
    if not REAL_DATA.is_dir():
        pytest.skip(REAL_DATA_REASON)
    return REAL_DATA


@pytest.fixture
def make_dicom() -> Callable[..., Path]:
    """:func:`helpers.write_dicom`, for test modules."""
    return write_dicom


@pytest.fixture(scope="session")
def fault_tree(tmp_path_factory: pytest.TempPathFactory) -> FaultTree:
    """The fault-injection tree, written once per session; tests must not modify it."""
    return build_fault_tree(tmp_path_factory.mktemp("faults") / "data")


# --------------------------------------------------------------------------- phantoms


@pytest.fixture(scope="session")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``phantom(**options)``: the root of ``write_phantom(root, **options)``, written
    once per session for each set of options.

    Shared by every module that asks for the same options, so tests must not
    modify it: :func:`helpers.copy_dataset` it into ``tmp_path`` first.  The
    usual option sets are ``helpers.LOADER_PHANTOM`` and ``helpers.CACHE_PHANTOM``.
    """
    written: dict[str, Path] = {}

    def get(**options: object) -> Path:
        key = repr(sorted(options.items()))
        if key not in written:
            root = tmp_path_factory.mktemp("phantom") / "data"
            write_phantom(root, **options)  # type: ignore[arg-type]
            written[key] = root
        return written[key]

    return get


@pytest.fixture(scope="session")
def traced(phantom: Callable[..., Path]) -> Traced:
    """The loader tests' phantom (``helpers.LOADER_PHANTOM``), scanned and traced."""
    return Traced(phantom(**LOADER_PHANTOM))


@pytest.fixture
def clean() -> Iterator[None]:
    """Fail the test if it leaves a child process or a shared-memory segment behind."""
    before = children()
    assert not segments()
    yield
    gc.collect()
    assert children() - before == set()
    assert segments() == []
