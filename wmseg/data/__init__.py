"""Datasets (no Lightning); `datamodule` holds the LightningDataModule."""

from wmseg.data.dataset import SyntheticWatermarks, to_tensors

__all__ = ["SyntheticWatermarks", "to_tensors"]
