"""The on-disk cache of the compiled kernels is dropped when the package's sources change (fast/cache.py)."""
from pathlib import Path

import pytest

from rnnkit.scratch.fast import cache, kernels


def _touch(folder: Path, *names: str) -> None:
    for name in names:
        (folder / name).write_bytes(b"cached")


def test_a_changed_digest_drops_the_packages_cached_functions_and_nothing_else(tmp_path):
    modules = {"gemm", "threaded_gru"}
    ours = ["gemm.gemm_panels-377.py311.nbi", "gemm.gemm_panels-377.py311.1.nbc",
            "threaded_gru.backward_part-183.py311.nbi"]
    theirs = ["other.f-1.py311.nbi", "gemm.notes.txt", "gemm.cpython-311.pyc"]
    _touch(tmp_path, *ours, *theirs)
    assert cache.refresh(tmp_path, "digest-1", modules)  # no stamp yet: dropped, stamped
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(theirs + [cache.STAMP])
    assert (tmp_path / cache.STAMP).read_text() == "digest-1"

    _touch(tmp_path, *ours)  # compiled again under the same sources: kept
    assert not cache.refresh(tmp_path, "digest-1", modules)
    assert all((tmp_path / name).exists() for name in ours)

    assert cache.refresh(tmp_path, "digest-2", modules)  # a source changed: all of the package's dropped
    assert not any((tmp_path / name).exists() for name in ours)
    assert all((tmp_path / name).exists() for name in theirs)
    assert (tmp_path / cache.STAMP).read_text() == "digest-2"


def test_the_digest_follows_every_source_file(tmp_path):
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "b.py").write_text("y = 2\n")
    (tmp_path / "notes.txt").write_text("not a source")
    first = cache.sources_digest(tmp_path)
    assert cache.sources_digest(tmp_path) == first
    (tmp_path / "notes.txt").write_text("still not a source")
    assert cache.sources_digest(tmp_path) == first
    (tmp_path / "b.py").write_text("y = 3\n")
    changed = cache.sources_digest(tmp_path)
    assert changed != first
    (tmp_path / "c.py").write_text("")
    assert cache.sources_digest(tmp_path) != changed
    assert cache.package_modules(tmp_path) == {"a", "b", "c"}


def test_a_folder_that_cannot_be_written_is_left_alone(tmp_path):
    missing = tmp_path / "absent"
    assert not cache.refresh(missing, "digest", {"gemm"})
    assert not missing.exists()


@pytest.mark.skipif(not kernels.AVAILABLE, reason="numba not installed")
def test_the_kernels_cache_folder_carries_the_current_sources_digest():
    folder = Path(kernels.tanh._cache._cache_path)
    if not folder.is_dir():
        pytest.skip("numba compiles in memory here")
    assert (folder / cache.STAMP).read_text() == cache.sources_digest()
    assert "threaded_gru" in cache.package_modules() and "gemm" in cache.package_modules()
