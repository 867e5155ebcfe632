"""EdgeSeg's export pipeline, installed as `edgeseg.export`: PyTorch -> ONNX -> FP16 / INT8 -> TensorRT engine."""
