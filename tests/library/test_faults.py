"""Fault injection: kill -9 a build, an append and a delete at every phase boundary (including
between the two renames of a swap without RENAME_EXCHANGE), and fail writes with ENOSPC;
after each, every library must be the old version or the new one, complete and searchable.

The builds run in subprocesses with a fake, torch-free encoder (deterministic vectors from
the SMILES), so each crash costs an interpreter start, not a model load.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from mmsa.library import build as B
from mmsa.library import list_libraries, open_library
from mmsa.types import LibraryError

from .fake_encoder import FakeEncoder

HERE = Path(__file__).resolve().parent

SCRIPT = textwrap.dedent(f'''
    import sys
    sys.path.insert(0, {str(HERE)!r})
    from fake_encoder import FakeEncoder
    from mmsa.library import add_to_library, build_library, delete_library
    op, root, name, src = sys.argv[1:5]
    if op == "build":
        build_library(src, name, root=root, encoder=FakeEncoder(), overwrite=True,
                      hyperedge_k=3, chunk_size=8)
    elif op == "add":
        add_to_library(name, src, root=root, encoder=FakeEncoder(), chunk_size=8)
    else:
        delete_library(name, root=root)
''')



def _csv(path, smiles):
    path.write_text("smiles,id\n" + "".join(f"{s},{s}\n" for s in smiles))
    return path


@pytest.fixture(scope="module")
def sources(tmp_path_factory, smiles_100):
    d = tmp_path_factory.mktemp("faults")
    return _csv(d / "old.csv", smiles_100[:40]), _csv(d / "new.csv", smiles_100[40:60])


def _run(op, root, name, src, crash_at=None):
    env = dict(os.environ)
    env.pop("MMSA_CRASH_AT", None)
    if crash_at:
        env["MMSA_CRASH_AT"] = crash_at
    return subprocess.run([sys.executable, "-c", SCRIPT, op, str(root), name, str(src)],
                          env=env, capture_output=True, text=True, timeout=120)


def _state(root, name):
    """'missing', or the molecule count of a complete, searchable library ``name``."""
    names = [i.name for i in list_libraries(root) if i.ok]
    try:
        lib = open_library(name, root=root, verify="full")
    except LibraryError as exc:
        if "no library named" in str(exc):
            assert name not in names
            return "missing"
        raise
    assert name in names
    n = len(lib)
    smi = lib.metadata["smiles"][n - 1]
    assert lib.search(smi, k=1, mode="tanimoto")["row"][0] == n - 1
    assert (n - 1) in lib.search(smi, mode="exact")["row"].tolist()
    assert len(lib.search("c1ccccc1", k=None, mode="substructure")) >= 0
    scores, rows = lib.search_vectors(np.asarray(lib.vectors[n - 1])[None, :], 1)
    assert rows[0, 0] == n - 1
    return n


def _rebuild(root, src):
    from mmsa.library import build_library

    build_library(src, "lib", root=root, encoder=FakeEncoder(), overwrite=True, hyperedge_k=3,
                  chunk_size=8)


@pytest.fixture()
def seeded(tmp_path, sources):
    """A root with library "lib" (40 molecules, built by the fake encoder) and a bystander
    "keep" (20)."""
    from mmsa.library import build_library

    root = tmp_path / "idx"
    build_library(sources[0], "lib", root=root, encoder=FakeEncoder(), hyperedge_k=3,
                  chunk_size=8)
    build_library(sources[1], "keep", root=root, encoder=FakeEncoder(), chunk_size=8)
    return root


def _others_intact(root) -> None:
    """The bystander library "keep" is untouched and nothing else is left over."""
    assert _state(root, "keep") == 20
    assert sorted(p.name for p in root.iterdir()) == ["keep", "lib"]


def test_every_fault_point_is_reached(tmp_path, sources, monkeypatch):
    from mmsa.library import add_to_library, build_library, delete_library

    seen = []
    monkeypatch.setattr(B, "fault_hook", seen.append)
    root = tmp_path / "idx"
    build_library(sources[0], "lib", root=root, encoder=FakeEncoder(), chunk_size=8)
    add_to_library("lib", sources[1], root=root, encoder=FakeEncoder(), chunk_size=8)
    delete_library("lib", root=root)
    assert set(B.FAULT_POINTS) <= set(seen), set(B.FAULT_POINTS) - set(seen)


BUILD_POINTS = [p for p in B.FAULT_POINTS if not p.startswith("delete")]


@pytest.mark.parametrize("point", BUILD_POINTS)
@pytest.mark.parametrize("op", ["build", "add"])
def test_kill_during_build_or_add(seeded, sources, op, point):
    r = _run(op, seeded, "lib", sources[1], crash_at=point)
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    new = 20 if op == "build" else 60
    assert _state(seeded, "lib") in (40, new)
    # the next operation recovers and succeeds
    _rebuild(seeded, sources[1])
    assert _state(seeded, "lib") == 20
    _others_intact(seeded)


@pytest.mark.parametrize("point", ["swap-between-renames", "swap-done"])
def test_kill_during_first_build(tmp_path, sources, point):
    root = tmp_path / "idx"
    r = _run("build", root, "fresh", sources[0], crash_at=point)
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    assert _state(root, "fresh") in ("missing", 40)


@pytest.mark.parametrize("point", [p for p in B.FAULT_POINTS if p.startswith("delete")])
def test_kill_during_delete(seeded, sources, point):
    r = _run("delete", seeded, "lib", sources[0], crash_at=point)
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    assert _state(seeded, "lib") in ("missing", 40)
    _rebuild(seeded, sources[1])
    _others_intact(seeded)


def test_kill_between_renames_without_rename_exchange(seeded, sources, monkeypatch):
    """Where RENAME_EXCHANGE is missing the swap is two renames; a kill between them must
    still leave a library the next open finds."""
    env_script = "import mmsa.library.build as B; B.HAVE_EXCHANGE = False\n"
    script = env_script + SCRIPT
    env = dict(os.environ, MMSA_CRASH_AT="swap-between-renames")
    r = subprocess.run([sys.executable, "-c", script, "build", str(seeded), "lib",
                        str(sources[1])], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    assert not (seeded / "lib").exists()  # the window really was hit
    assert _state(seeded, "lib") == 20  # recovered: the complete new version


@pytest.mark.parametrize("point", BUILD_POINTS)
def test_disk_full_at_every_point(seeded, sources, monkeypatch, point):
    def hook(p):
        if p == point:
            raise OSError(errno.ENOSPC, "No space left on device")

    from mmsa.library import build_library

    monkeypatch.setattr(B, "fault_hook", hook)
    try:
        build_library(sources[1], "lib", root=seeded, encoder=FakeEncoder(), overwrite=True,
                      chunk_size=8)
    except LibraryError as exc:
        assert "space" in str(exc)
    monkeypatch.setattr(B, "fault_hook", None)
    assert _state(seeded, "lib") in (40, 20)
    _others_intact(seeded)


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="no tmpfs")
def test_real_disk_full_on_a_small_tmpfs(tmp_path, sources):
    """Fill a real tmpfs when one can be mounted (needs root); else skipped."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(mnt)],
                       capture_output=True)
    if r.returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        from mmsa.library import build_library

        root = mnt / "idx"
        build_library(sources[0], "lib", root=root, encoder=FakeEncoder(), chunk_size=8)
        fd = os.open(mnt / "filler", os.O_CREAT | os.O_WRONLY)
        try:  # leave nothing free
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError:
            pass
        finally:
            os.close(fd)
        with pytest.raises(LibraryError, match="space"):
            build_library(sources[1], "lib", root=root, encoder=FakeEncoder(),
                          overwrite=True, chunk_size=8)
        (mnt / "filler").unlink()
        assert _state(root, "lib") == 40
        assert sorted(p.name for p in root.iterdir()) == ["lib"]
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)
        shutil.rmtree(mnt, ignore_errors=True)
