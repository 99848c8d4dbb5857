"""The torch engine: rnnkit's models on PyTorch (nn.LSTM / nn.GRU / nn.RNN, cuDNN on a GPU).

Parameter names, shapes and initialisation are the scratch engine's, so weights move between the two:

    from rnnkit.torch import LanguageModel, TorchEngine
    engine = TorchEngine(LanguageModel(vocab_size=65), "adam", lr=2e-3, clip=1.0, device="auto")
"""
try:
    import torch  # noqa: F401  (absolute: the top-level torch, not this package)
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("rnnkit.torch needs PyTorch: pip install 'rnnkit[torch]'") from e

from .device import select_device
from .engine import TorchEngine, make_optimizer
from .models import CELLS, LanguageModel, TextClassifier, make_recurrent

__all__ = ["CELLS", "LanguageModel", "TextClassifier", "TorchEngine", "make_optimizer", "make_recurrent", "select_device"]
