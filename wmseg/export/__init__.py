"""Export: ONNX under the wmseg contract, static INT8 quantization. No Lightning."""
