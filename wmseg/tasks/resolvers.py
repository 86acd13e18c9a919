"""OmegaConf resolvers the configs use; registered when `wmseg.tasks` is imported."""

from __future__ import annotations

from omegaconf import OmegaConf


def metric_label(name: str) -> str:
    """`val/best_f1` -> `best_f1`: a metric's name without its stage, safe in a filename."""
    return str(name).rsplit("/", 1)[-1]


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("metric_label"):
        OmegaConf.register_new_resolver("metric_label", metric_label)
