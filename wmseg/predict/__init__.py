"""Find and remove watermarks in images, folders and videos (`wmseg-predict`). No Lightning."""

from wmseg.predict.batch_run import RunOptions
from wmseg.predict.detect import AdaptiveBatch, DetectOptions, Detector
from wmseg.predict.inpaint import OnnxInpainter, OpenCVInpainter, PatchMatchInpainter, dilate, fill
from wmseg.predict.remover import Remover

__all__ = [
    "AdaptiveBatch",
    "DetectOptions",
    "Detector",
    "OnnxInpainter",
    "OpenCVInpainter",
    "PatchMatchInpainter",
    "Remover",
    "RunOptions",
    "dilate",
    "fill",
]
