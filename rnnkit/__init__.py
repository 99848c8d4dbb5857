"""rnnkit: recurrent neural networks from scratch (NumPy, hand-written BPTT) and on PyTorch."""

__version__ = "0.1.0"
