"""Export trained models to ONNX and TorchScript for C++ inference, checked against PyTorch."""

from .export import ExportError, export_model, run_export

__all__ = ["ExportError", "export_model", "run_export"]
