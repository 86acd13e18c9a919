"""Lightning callbacks of wmseg."""

from wmseg.callbacks.channel_pruning import ChannelPruning
from wmseg.callbacks.distillation import Distillation
from wmseg.callbacks.ema import EMAWeights
from wmseg.callbacks.overlays import PredictionOverlays
from wmseg.callbacks.pruning import ConvPruning
from wmseg.callbacks.run_config import EmbedRunConfig

__all__ = [
    "ChannelPruning",
    "ConvPruning",
    "Distillation",
    "EMAWeights",
    "EmbedRunConfig",
    "PredictionOverlays",
]
