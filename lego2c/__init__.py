"""lego2c: ONNX to block-weight-clustered C for microcontrollers."""

__version__ = "0.1.0"
