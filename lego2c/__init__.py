"""lego2c: ONNX to block-weight-clustered C for microcontrollers."""

import os

# Same inputs, same bytes. torch's BLAS on x86 (MKL) otherwise picks code paths by memory alignment on
# AVX-512 CPUs, so two runs of the default on one machine could make different synthetic inputs in the
# last bits and, through the budget search, store different plans (ResNet-8: 23,500 or 23,580 bytes).
# MKL reads this once, when torch first calls it: lego2c must be imported before that.
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

__version__ = "0.1.0"
