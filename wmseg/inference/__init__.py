"""Inference without Lightning: checkpoints and ONNX models behind one Predictor interface."""

from wmseg.inference.batching import predict_items, predict_tiled
from wmseg.inference.predictor import FlipAveraged, OnnxPredictor, Predictor, TorchPredictor
from wmseg.models.checkpoint import CheckpointError, LoadedModel, load_model

__all__ = [
    "CheckpointError",
    "FlipAveraged",
    "LoadedModel",
    "OnnxPredictor",
    "Predictor",
    "TorchPredictor",
    "load_model",
    "predict_items",
    "predict_tiled",
]
