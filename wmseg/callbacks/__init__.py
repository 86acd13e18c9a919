"""Lightning callbacks of wmseg."""

from wmseg.callbacks.overlays import PredictionOverlays
from wmseg.callbacks.run_config import EmbedRunConfig

__all__ = ["EmbedRunConfig", "PredictionOverlays"]
