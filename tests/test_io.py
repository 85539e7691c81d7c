"""Atomic writes: permissions like a plain write, and no leftovers after a kill -9 that a sweep would miss."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import epaiqa.io as eio
from epaiqa.io import atomic_write, atomic_write_text, current_umask, make_temp_dir, sweep_stale_temps, temp_path

REPO = Path(__file__).resolve().parents[1]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask() -> Iterator[None]:
    """Lets a test set the umask; restores the old one."""
    old = os.umask(0o022)
    os.umask(old)
    try:
        yield
    finally:
        os.umask(old)


def dead_pid() -> int:
    """The pid of a process that has finished (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_new_file_gets_the_umask_mode(tmp_path: Path, umask, mask: int, expected: int) -> None:
    os.umask(mask)
    assert current_umask() == mask
    assert mode(atomic_write_text(tmp_path / "new.txt", "x")) == expected


def test_umask_without_proc(tmp_path: Path, umask, monkeypatch) -> None:
    monkeypatch.setattr(eio, "_PROC_STATUS", str(tmp_path / "no-such-file"))
    os.umask(0o027)
    assert current_umask() == 0o027
    assert current_umask() == 0o027, "reading the umask must leave it as it was"
    assert mode(atomic_write_text(tmp_path / "new.txt", "x")) == 0o640


@pytest.mark.parametrize("old_mode", [0o640, 0o600, 0o664])
def test_replacing_a_file_keeps_its_mode(tmp_path: Path, umask, old_mode: int) -> None:
    os.umask(0o022)
    target = tmp_path / "manifest.jsonl"
    target.write_text("old\n")
    target.chmod(old_mode)
    atomic_write_text(target, "new\n")
    assert target.read_text() == "new\n"
    assert mode(target) == old_mode


def test_temp_names_carry_the_pid(tmp_path: Path) -> None:
    seen: list[str] = []
    atomic_write(tmp_path / "a.b.json", lambda fh: seen.extend(p.name for p in tmp_path.iterdir()))
    assert len(seen) == 1
    name = seen[0]
    assert name.startswith(".a.b.json.") and name.endswith(".tmp")
    assert eio._TEMP_RE.match(name)["pid"] == str(os.getpid())
    assert eio._TEMP_RE.match(name)["name"] == "a.b.json"
    assert [p.name for p in tmp_path.iterdir()] == ["a.b.json"]


def test_failed_write_removes_its_temp_and_keeps_the_target(tmp_path: Path) -> None:
    target = atomic_write_text(tmp_path / "t.txt", "old")

    def boom(fh) -> None:
        fh.write(b"partial")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        atomic_write(target, boom)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["t.txt"]


WRITER = textwrap.dedent(
    """
    import sys, time
    from epaiqa.io import atomic_write

    def write(fh):
        fh.write(b"x" * 100_000)
        fh.flush()
        time.sleep(3600)

    atomic_write(sys.argv[1], write)
    """
)


def wait_for(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.01)
    raise AssertionError("timed out")


@pytest.mark.parametrize("existed", [True, False])
def test_sigkill_during_a_write_leaves_the_target_and_a_sweepable_temp(tmp_path: Path, existed: bool) -> None:
    target = tmp_path / "last.ckpt"
    if existed:
        target.write_bytes(b"old checkpoint")
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], cwd=REPO)
    try:

        def written_temp() -> list[Path]:
            return [p for p in tmp_path.glob(".last.ckpt.*.tmp") if p.stat().st_size == 100_000]

        (leftover,) = wait_for(written_temp)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert eio._TEMP_RE.match(leftover.name)["pid"] == str(proc.pid)
    if existed:
        assert target.read_bytes() == b"old checkpoint"
    else:
        assert not target.exists()

    live = temp_path(target)  # this process's: a write in progress
    live.write_bytes(b"in progress")
    other = tmp_path / ".last.ckpt.1234.tmp"  # not our naming
    other.write_bytes(b"")
    assert sweep_stale_temps(tmp_path) == [leftover]
    assert not leftover.exists()
    assert live.exists() and other.exists()
    assert target.exists() == existed
    assert sweep_stale_temps(tmp_path) == []


def test_sweep_spares_live_pids_and_removes_old_ones(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        live = temp_path(tmp_path / "x.json", pid=child.pid)
        live.write_text("")
        old_live = temp_path(tmp_path / "y.json", pid=child.pid)
        old_live.write_text("")
        day_ago = time.time() - 25 * 3600
        os.utime(old_live, (day_ago, day_ago))
        assert sweep_stale_temps(tmp_path) == [old_live]
        assert live.exists()
        assert sweep_stale_temps(tmp_path, max_age_s=-1) == [live]
    finally:
        child.kill()
        child.wait()


def test_sweep_of_another_hosts_temps_goes_by_age_only(tmp_path: Path) -> None:
    pid = dead_pid()
    foreign = tmp_path / f".r.json.{pid}.000000.0123abcd.tmp"
    if eio._host_tag() == "000000":
        pytest.skip("this host's tag is 000000")
    foreign.write_text("")
    assert sweep_stale_temps(tmp_path) == []
    day_ago = time.time() - 25 * 3600
    os.utime(foreign, (day_ago, day_ago))
    assert sweep_stale_temps(tmp_path) == [foreign]


def test_recursive_sweep_finds_nested_temps_and_folders(tmp_path: Path) -> None:
    pid = dead_pid()
    nested = tmp_path / "run" / "checkpoints"
    nested.mkdir(parents=True)
    file_temp = temp_path(nested / "epoch=0.ckpt", pid=pid)
    file_temp.write_bytes(b"partial")
    folder_temp = temp_path(tmp_path / "cache", pid=pid)
    (folder_temp / "images").mkdir(parents=True)
    (folder_temp / "images" / "a.jpg").write_bytes(b"x")
    keep = nested / "epoch=0.ckpt"
    keep.write_bytes(b"ok")
    assert sweep_stale_temps(tmp_path) == [folder_temp]
    assert file_temp.exists()
    assert sweep_stale_temps(tmp_path, recursive=True) == [file_temp]
    assert keep.read_bytes() == b"ok"
    assert sweep_stale_temps(tmp_path / "missing", recursive=True) == []


def test_killed_demo_cache_build_is_swept_by_the_next_build(tmp_path: Path, monkeypatch, umask) -> None:
    from epaiqa.data.demo import generate

    os.umask(0o022)
    root = generate.demo_root(tmp_path, 8, 0, 32)
    killed = temp_path(root, pid=dead_pid())
    (killed / "images").mkdir(parents=True)
    (killed / "images" / "0.jpg").write_bytes(b"partial")
    live = make_temp_dir(root)  # a build running in this process, say in another thread

    builds: list[Path] = []

    def fake_generate(out: Path, n: int, seed: int, size: int) -> Path:
        assert not killed.exists(), "the stale build must be swept before building"
        assert eio._TEMP_RE.match(out.name)["pid"] == str(os.getpid())
        builds.append(out)
        atomic_write_text(out / "splits.json", "{}\n")
        return out

    monkeypatch.setattr(generate, "generate_demo_set", fake_generate)
    assert generate.ensure_demo_set(tmp_path, 8, 0, 32) == root
    assert (root / "splits.json").is_file()
    assert mode(root) == 0o755, "the cache is readable to others, as the umask says"
    assert not builds[0].exists()
    assert live.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([root.name, live.name])


def test_demo_cache_build_that_loses_the_race_discards_its_copy(tmp_path: Path, monkeypatch) -> None:
    from epaiqa.data.demo import generate

    root = generate.demo_root(tmp_path, 8, 0, 32)

    def fake_generate(out: Path, n: int, seed: int, size: int) -> Path:
        atomic_write_text(out / "splits.json", '"mine"\n')
        # another builder finishes first
        winner = make_temp_dir(root)
        atomic_write_text(winner / "splits.json", '"theirs"\n')
        os.replace(winner, root)
        return out

    monkeypatch.setattr(generate, "generate_demo_set", fake_generate)
    assert generate.ensure_demo_set(tmp_path, 8, 0, 32) == root
    assert (root / "splits.json").read_text() == '"theirs"\n'
    assert [p.name for p in tmp_path.iterdir()] == [root.name]


def test_a_foreign_folder_in_the_build_s_place_is_named_not_overwritten(tmp_path: Path) -> None:
    from epaiqa.errors import DataError
    from epaiqa.io import ensure_folder

    target = tmp_path / "demo"
    (target / "stray").mkdir(parents=True)  # e.g. a copy nested one level too deep
    with pytest.raises(DataError, match=r"demo exists but is not a finished build \(it has no splits.json\)"):
        ensure_folder(target, "splits.json", lambda tmp: atomic_write_text(tmp / "splits.json", "{}\n"))
    assert [p.name for p in target.iterdir()] == ["stray"]
    assert [p.name for p in tmp_path.iterdir()] == ["demo"]  # its own copy discarded


def test_checkpoint_io_writes_atomically_and_removes(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("lightning")
    from epaiqa.checkpoint import AtomicCheckpointIO

    io = AtomicCheckpointIO()
    target = tmp_path / "ckpts" / "epoch=0.ckpt"
    io.save_checkpoint({"step": 1, "w": torch.zeros(2)}, target)
    io.save_checkpoint({"step": 2, "w": torch.ones(2)}, str(target))
    assert io.load_checkpoint(target)["step"] == 2
    assert [p.name for p in target.parent.iterdir()] == ["epoch=0.ckpt"]
    io.remove_checkpoint(target)
    assert not target.exists()
    io.remove_checkpoint(target)  # already gone: no error
    with pytest.raises(TypeError):
        io.save_checkpoint({}, target, storage_options={"x": 1})
