"""Torch datasets over the synthesis engine. No Lightning."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from wmseg.data.cache import DiskSamples, MemorySamples
from wmseg.synth import WatermarkSynth


def to_tensors(image: np.ndarray, mask: np.ndarray) -> dict[str, torch.Tensor]:
    """uint8 (H, W, 3) image and (H, W) 0/1 mask -> float tensors (3, H, W) and (1, H, W)."""
    return {
        "image": torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255),
        "mask": torch.from_numpy(np.ascontiguousarray(mask))[None].float(),
    }


class SyntheticWatermarks(Dataset):
    """`length` samples of `synth`; sample i is a pure function of (seed, i).

    Example:
        >>> ds = SyntheticWatermarks(WatermarkSynth(), length=10, seed=1)
        >>> ds[0]["image"].shape
        torch.Size([3, 128, 128])
    """

    def __init__(
        self,
        synth: WatermarkSynth,
        length: int,
        seed: int,
        store: DiskSamples | MemorySamples | None = None,
    ) -> None:
        if length <= 0:
            raise ValueError(f"dataset length must be > 0, got {length}")
        if store is not None and len(store) != length:
            raise ValueError(f"sample cache holds {len(store)} samples, the split needs {length}")
        self.synth, self.length, self.seed, self.store = synth, length, seed, store

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        if self.store is not None:  # the same bytes render() gives, rendered earlier
            return to_tensors(*self.store[index])
        sample = self.synth.render(self.seed, index)
        return to_tensors(sample.image, sample.mask)
