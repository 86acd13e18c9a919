"""Lightning callbacks of wmseg."""

from wmseg.callbacks.ema import EMAWeights
from wmseg.callbacks.overlays import PredictionOverlays
from wmseg.callbacks.run_config import EmbedRunConfig

__all__ = ["EMAWeights", "EmbedRunConfig", "PredictionOverlays"]
