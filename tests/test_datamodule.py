from pathlib import Path

import pytest
import torch

from epaiqa.data.datamodule import PAIDataModule
from epaiqa.data.datasets import VIEWS
from epaiqa.data.manifest import load_manifest
from epaiqa.data.schema import EDIT_TYPES
from epaiqa.data.splits import load_splits
from epaiqa.errors import ConfigError


@pytest.mark.parametrize("task", ["harmony", "naturalness", "overall"])
@pytest.mark.parametrize("reference", [False, True])
def test_batches_are_dicts_with_ids_and_edit_types(demo_root: Path, task: str, reference: bool) -> None:
    dm = PAIDataModule(root=str(demo_root), task=task, reference=reference, image_size=32, batch_size=5)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert batch["img"].shape == (5, 3, 32, 32)
    assert batch["img"].min() >= 0 and batch["img"].max() <= 1
    assert ("ref" in batch) == reference
    if reference:
        assert batch["ref"].shape == batch["img"].shape
    assert batch["mos"].dtype == torch.float32 and len(batch["id"]) == 5
    assert set(batch["edit_type"]) <= set(EDIT_TYPES)


def test_train_val_test_partition_the_subset_without_leaks(demo_root: Path) -> None:
    dm = PAIDataModule(root=str(demo_root), task="harmony", val_fraction=0.2, image_size=32)
    dm.setup()
    ids = {part: {s.id for s in ds.samples} for part, ds in dm.datasets.items()}
    splits = load_splits(demo_root, load_manifest(demo_root))
    all_test = set().union(*(set(s["test"]) for s in splits.values()))
    assert ids["test"] == set(splits["harmony"]["test"])
    assert ids["train"] | ids["val"] == set(splits["harmony"]["train"])
    assert not ids["train"] & ids["val"] and not (ids["train"] | ids["val"]) & all_test
    assert ids["val"]


@pytest.mark.parametrize("view", VIEWS)
def test_every_view_gives_the_configured_size(demo_root: Path, view: str) -> None:
    dm = PAIDataModule(root=str(demo_root), task="naturalness", view=view, image_size=24, reference=True)
    dm.setup()
    item = dm.datasets["test"][0]
    assert item["img"].shape == (3, 24, 24) and item["ref"].shape == (3, 24, 24)


def test_region_view_differs_from_whole(demo_root: Path) -> None:
    items = {}
    for view in ("whole", "region"):
        dm = PAIDataModule(root=str(demo_root), task="naturalness", view=view, image_size=32)
        dm.setup()
        items[view] = dm.datasets["test"][0]["img"]
    assert not torch.allclose(items["whole"], items["region"])


def test_evaluation_is_deterministic_and_workers_give_the_same_batches(demo_root: Path) -> None:
    def first_test_batch(workers: int) -> torch.Tensor:
        dm = PAIDataModule(root=str(demo_root), task="harmony", view="native", image_size=32, num_workers=workers)
        dm.setup()
        return next(iter(dm.test_dataloader()))["img"]

    assert torch.equal(first_test_batch(0), first_test_batch(0))
    assert torch.equal(first_test_batch(0), first_test_batch(1))


def test_unknown_task_and_view_are_config_errors(demo_root: Path) -> None:
    from epaiqa.errors import ConfigError

    with pytest.raises(ConfigError, match=r"data\.task"):
        PAIDataModule(root=str(demo_root), task="beauty")
    dm = PAIDataModule(root=str(demo_root), view="sideways")
    with pytest.raises(ConfigError, match=r"data\.view"):
        dm.setup()


def test_split_seed_splits_every_subset_again_without_leaks(demo_root: Path) -> None:
    def parts(split_seed: int | None) -> tuple[PAIDataModule, dict[str, set[str]]]:
        dm = PAIDataModule(root=str(demo_root), task="harmony", image_size=32, split_seed=split_seed)
        dm.setup()
        return dm, {part: {s.id for s in ds.samples} for part, ds in dm.datasets.items()}

    fixed, base = parts(None)
    one, a = parts(1)
    two, b = parts(2)
    _, a2 = parts(1)
    assert a == a2 and a["test"] != b["test"] and a["test"] != base["test"]
    assert (one.split_seed, two.split_seed, fixed.split_seed) == (1, 2, 3)  # the demo root was split with seed 3
    assert len(a["test"]) == len(base["test"]) and not (a["train"] | a["val"]) & a["test"]
    by_source = {s.id: s.source for s in load_manifest(demo_root)}
    assert not {by_source[i] for i in a["test"]} & {by_source[i] for i in a["train"] | a["val"]}
    assert len({fixed.fingerprint(), one.fingerprint(), two.fingerprint()}) == 3
    with pytest.raises(ConfigError, match="split_seed"):
        PAIDataModule(root=str(demo_root), split_seed="1")  # type: ignore[arg-type]
