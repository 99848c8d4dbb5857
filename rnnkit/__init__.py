"""rnnkit: recurrent neural networks from scratch (NumPy, hand-written BPTT) and on PyTorch.

Importing rnnkit changes nothing in the host process; rnnkit.runtime.tune_process() applies rnnkit's
process tuning (OpenBLAS kernels and thread timeout, malloc thresholds) where a program asks for it.
"""

__version__ = "0.1.0"
