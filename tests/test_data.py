import pytest
import torch

from wmseg.data.datamodule import WatermarkDataModule
from wmseg.synth import SynthConfig


def _batches(workers: int) -> list[dict[str, torch.Tensor]]:
    dm = WatermarkDataModule(
        synth=SynthConfig(size=64), train_size=12, val_size=8, test_size=8, batch_size=4, num_workers=workers
    )
    dm.setup("fit")
    return list(dm.val_dataloader())


def test_samples_identical_for_0_and_2_workers():
    a, b = _batches(0), _batches(2)
    assert len(a) == len(b) == 2
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x["image"], y["image"]) and torch.equal(x["mask"], y["mask"])


def test_batches_shapes_and_splits_differ():
    dm = WatermarkDataModule(
        synth=SynthConfig(size=64), train_size=8, val_size=4, test_size=4, batch_size=4, num_workers=0
    )
    dm.setup("fit")
    train, val, test = (next(iter(f())) for f in (dm.train_dataloader, dm.val_dataloader, dm.test_dataloader))
    assert train["image"].shape == (4, 3, 64, 64) and train["mask"].shape == (4, 1, 64, 64)
    assert train["image"].dtype == torch.float32 and train["image"].min() >= 0 and train["image"].max() <= 1
    assert set(train["mask"].unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(val["image"], test["image"])


@pytest.mark.parametrize("key", ["batch_size", "train_size", "val_size"])
def test_non_positive_sizes_are_refused(key):
    with pytest.raises(ValueError, match=f"data.{key}"):
        WatermarkDataModule(**{key: 0})
