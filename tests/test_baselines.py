import time

import pytest
import torch

from epaiqa.baselines import baseline_info, create_baseline, list_baselines
from epaiqa.errors import ConfigError

SMALL = {"stair_iqa": {"depth": 18}, "topiq_nr": {"backbone": "resnet18"}, "topiq_fr": {"backbone": "resnet18"}}


def test_registry_lists_nr_and_fr_models() -> None:
    names = list_baselines()
    assert {"stair_iqa", "topiq_nr", "topiq_fr", "wadiqam_nr", "wadiqam_fr"} <= set(names)
    assert set(list_baselines("FR")) == {n for n in names if baseline_info(n).reference}
    with pytest.raises(ConfigError, match="unknown baseline 'nope'"):
        baseline_info("nope")


@pytest.mark.parametrize("name", list_baselines())
def test_builds_offline_forward_backward_no_nan(name: str) -> None:
    torch.manual_seed(0)
    model = create_baseline(name, **SMALL.get(name, {}))
    img, ref = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    out = model(img, ref)
    assert out.shape == (2,)
    out.sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert torch.isfinite(out).all()
    model.eval()
    with torch.no_grad():
        assert model(img, ref).shape == (2,)


@pytest.mark.parametrize("name", list_baselines())
def test_pretrained_without_weights_fails_fast_with_instructions(name: str, tmp_path) -> None:
    start = time.perf_counter()
    with pytest.raises(ConfigError) as err:
        create_baseline(name, pretrained=True, weights_path=str(tmp_path / "missing.pth"))
    assert time.perf_counter() - start < 5
    message = str(err.value)
    assert "missing.pth does not exist" in message and "Download" in message and "weights_path" in message


def test_full_reference_model_needs_the_source() -> None:
    model = create_baseline("wadiqam_fr")
    with pytest.raises(ValueError, match="full-reference"):
        model(torch.rand(1, 3, 64, 64))


def test_pretrained_weights_round_trip_from_local_file(tmp_path) -> None:
    model = create_baseline("stair_iqa", depth=18)
    path = tmp_path / "stair.pth"
    torch.save(model.net.state_dict(), path)
    loaded = create_baseline("stair_iqa", pretrained=True, weights_path=str(path), depth=18)
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b)
