"""EdgeSeg's export pipeline. This folder (`export/` at the top of the repository) installs as `edgeseg.export`
(pyproject.toml: wheel.packages), so it is imported as `edgeseg.export.*`.

PyTorch checkpoint -> ONNX (checked against PyTorch) -> FP16 / INT8 Q/DQ ONNX -> strongly typed TensorRT engine +
sidecar, plus an accuracy report. `formats.py` is the one table of what can be exported and with which options;
each step is a small function in its own module (onnx_from_torch, fp16_from_onnx, qdq_from_onnx,
engine_from_onnx), chained by `pipeline.export_model`. The runtime never imports this package: what both sides
share lives in edgeseg.config (ModelMeta), edgeseg.sidecar (EngineSidecar) and edgeseg.runtime.plan.
"""
