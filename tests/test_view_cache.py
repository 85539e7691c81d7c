"""The view cache: exact, shared by later jobs, never stale, bounded; the training native window is not cached."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
from PIL import Image

import epaiqa.data.datasets as datasets_module
from epaiqa.data.base import SampleKey
from epaiqa.data.datamodule import PAIDataModule
from epaiqa.data.datasets import PAIDataset
from epaiqa.data.manifest import load_manifest
from epaiqa.data.view_cache import ViewCache


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files the dataset decodes (``load_rgb`` calls), in order."""
    calls: list[str] = []
    real = datasets_module.load_rgb

    def counting(path):
        calls.append(str(path))
        return real(path)

    monkeypatch.setattr(datasets_module, "load_rgb", counting)
    return calls


def _dataset(root: Path, cache_dir: Path | None, view: str = "whole", train: bool = False, **kw) -> PAIDataset:
    samples = load_manifest(root)
    caches = {}
    if cache_dir is not None:
        for kind in ("img", "ref"):
            key = {"root": str(root), "view": view, "kind": kind}
            caches[kind] = ViewCache.open(cache_dir, key, [s.id for s in samples], 32, max_mb=64)
    return PAIDataset(root, samples, "harmony", view, 32, reference=True, train=train, view_cache=caches, **kw)


def _items(dataset: PAIDataset, keys: list) -> list[dict]:
    return [dataset[k] for k in keys]


@pytest.mark.parametrize(("view", "train"), [("whole", False), ("context", True), ("native", False)])
def test_cached_items_are_the_decoded_items_and_a_second_pass_decodes_nothing(
    demo_root: Path, tmp_path: Path, decodes: list[str], view: str, train: bool
) -> None:
    keys = [SampleKey(i, 1000 + i) for i in range(8)] if train else list(range(8))
    plain = _items(_dataset(demo_root, None, view, train), keys)
    first = _items(_dataset(demo_root, tmp_path, view, train), keys)
    decodes.clear()
    second = _items(_dataset(demo_root, tmp_path, view, train), keys)  # a later job: a new dataset, same folder
    assert decodes == []
    for a, b, c in zip(plain, first, second, strict=True):
        for key in ("img", "ref"):
            assert torch.equal(a[key], b[key]) and torch.equal(a[key], c[key])


def test_a_changed_image_is_decoded_again(demo_copy: Path, tmp_path: Path, decodes: list[str]) -> None:
    dataset = _dataset(demo_copy, tmp_path)
    before = dataset[0]["img"]
    edited = demo_copy / dataset.samples[0].edited
    with Image.open(edited) as img:
        Image.new("RGB", img.size, (200, 10, 10)).save(edited, format=img.format)
    os.utime(edited, ns=(edited.stat().st_atime_ns, edited.stat().st_mtime_ns + 10**9))
    decodes.clear()
    after = _dataset(demo_copy, tmp_path)[0]["img"]
    assert decodes == [str(edited), str(demo_copy / dataset.samples[0].source)]
    assert not torch.equal(before, after)
    assert after[0].mean() > 0.7 and after[1].mean() < 0.1  # the new red picture, not the cached row


def test_the_training_native_window_is_drawn_anew_not_cached(
    demo_root: Path, tmp_path: Path, decodes: list[str]
) -> None:
    dataset = _dataset(demo_root, tmp_path, "native", train=True)
    dataset[SampleKey(0, 1)]
    dataset[SampleKey(0, 2)]
    assert len(decodes) == 4  # edited and source, twice
    assert not dataset.view_cache["img"]._arrays()[1][:, 0].any()  # no row filled


def test_a_damaged_entry_is_removed_with_a_warning_and_the_job_decodes(
    demo_root: Path, tmp_path: Path, decodes: list[str]
) -> None:
    want = _dataset(demo_root, None)[0]["img"]
    _dataset(demo_root, tmp_path)[0]  # the rows of sample 0 filled by one job
    dataset = _dataset(demo_root, tmp_path)  # the next job
    folder = dataset.view_cache["img"].folder
    with open(folder / "pixels.u8", "r+b") as fh:
        fh.truncate(10)  # cut short by hand, or by a disk error
    decodes.clear()
    with pytest.warns(UserWarning, match=f"view cache entry {folder} is damaged"):
        got = dataset[0]["img"]
    assert torch.equal(got, want) and len(decodes) == 2 and not folder.exists()
    dataset[1]  # one warning per entry: later items decode quietly


def test_the_cache_is_bounded(tmp_path: Path) -> None:
    ids = [f"s{i}" for i in range(100)]  # 100 rows of 3x64x64: ~1.2 MB an entry
    assert ViewCache.open(tmp_path, {"k": 0}, ids, 64, max_mb=1) is None  # larger than the whole budget
    first = ViewCache.open(tmp_path, {"k": 1}, ids, 64, max_mb=2)
    assert first is not None and first.folder.is_dir()
    os.utime(first.folder / "meta.json", (1, 1))  # used long ago
    second = ViewCache.open(tmp_path, {"k": 2}, ids, 64, max_mb=2)
    assert second is not None and second.folder.is_dir()
    assert not first.folder.exists()  # evicted to make room: two entries do not fit in 2 MB


def test_a_pickled_dataset_reads_the_same_rows(demo_root: Path, tmp_path: Path, decodes: list[str]) -> None:
    dataset = _dataset(demo_root, tmp_path)
    want = dataset[3]["img"]
    decodes.clear()
    copy = pickle.loads(pickle.dumps(dataset))  # what a data-loader worker receives
    assert torch.equal(copy[3]["img"], want) and decodes == []


def test_the_datamodule_shares_views_between_jobs_and_can_turn_them_off(
    demo_root: Path, tmp_path: Path, decodes: list[str]
) -> None:
    def first_batches(mb: float) -> torch.Tensor:
        dm = PAIDataModule(
            root=str(demo_root), image_size=32, batch_size=8, view_cache_dir=str(tmp_path), view_cache_mb=mb
        )
        dm.setup("fit")
        return next(iter(dm.test_dataloader()))["img"]

    a = first_batches(64)
    decodes.clear()
    b = first_batches(64)
    assert decodes == [] and torch.equal(a, b)
    c = first_batches(0)
    assert len(decodes) == 8 and torch.equal(a, c)
    with pytest.raises(Exception, match="view_cache_mb"):
        PAIDataModule(root=str(demo_root), view_cache_dir=str(tmp_path), view_cache_mb=-1)
