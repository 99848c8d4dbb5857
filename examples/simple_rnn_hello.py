"""A first recurrent network: the classic SimpleRNN (PyTorch tutorial style) reading "HELLO".

At each step the one-hot letter x_t and the previous hidden state h_{t-1} are glued together,
combined = [x_t, h_{t-1}], and two Linear layers read it:

    hidden = i2h(combined)                    the new memory, passed on to the next step
    output = log_softmax(i2o(combined))       log-probabilities of the next letter

The weights are random (nothing is trained here): this only shows the data flowing through.
Run: python examples/simple_rnn_hello.py
"""
import numpy as np

from rnnkit.scratch.layers import Linear
from rnnkit.scratch.losses import log_softmax
from rnnkit.scratch.module import Module, make_rng

WORD = "HELLO"
VOCAB = list(dict.fromkeys(WORD))  # the distinct letters, in order of appearance: H, E, L, O


def one_hot(letter: str) -> np.ndarray:
    x = np.zeros((1, len(VOCAB)))  # (batch=1, vocabulary)
    x[0, VOCAB.index(letter)] = 1.0
    return x


class SimpleRNN(Module):
    def __init__(self, input_size, hidden_size, output_size, rng=None):
        rng = make_rng(rng)
        self.hidden_size = hidden_size
        self.i2h = Linear(input_size + hidden_size, hidden_size, dtype=np.float64, rng=rng)
        self.i2o = Linear(input_size + hidden_size, output_size, dtype=np.float64, rng=rng)

    def forward(self, x, hidden):
        combined = np.concatenate([x, hidden], axis=1)
        hidden = self.i2h.forward(combined)
        output = log_softmax(self.i2o.forward(combined))
        return output, hidden

    def init_hidden(self, batch=1):
        return np.zeros((batch, self.hidden_size))


def fmt(v) -> str:
    return "[" + " ".join(f"{x:+.3f}" for x in np.ravel(v)) + "]"


def main(hidden_size: int = 3, seed: int = 0) -> dict:
    model = SimpleRNN(len(VOCAB), hidden_size, len(VOCAB), rng=seed)
    print(f"vocabulary {VOCAB}; each letter is a one-hot vector of length {len(VOCAB)}")
    print(f"i2h: Linear({len(VOCAB)} + {hidden_size} -> {hidden_size})   "
          f"i2o: Linear({len(VOCAB)} + {hidden_size} -> {len(VOCAB)})   (random weights, seed {seed})")
    print(f"log-probabilities of the next letter, columns {' '.join(VOCAB)}:")

    hidden = model.init_hidden()
    inputs, log_probs, hiddens = [], [], []
    for t, letter in enumerate(WORD, start=1):
        x = one_hot(letter)
        output, hidden = model.forward(x, hidden)
        inputs.append(x[0]), log_probs.append(output[0]), hiddens.append(hidden[0])
        guess = VOCAB[int(output.argmax())]
        print(f"  t={t} '{letter}'  log p = {fmt(output)}  sum p = {np.exp(output).sum():.3f}"
              f"  guess '{guess}'  h = {fmt(hidden)}")
    print(f"final hidden state h_{len(WORD)} = {fmt(hidden)}")
    print("Untrained, so the guesses are arbitrary. Note that this hidden = i2h(combined) has no squashing;\n"
          "nn.RNN (and rnnkit's RNN) apply tanh to it: see worked_step.py.")
    return {
        "vocab": VOCAB,
        "inputs": np.array(inputs),        # (5, 4) one-hot
        "log_probs": np.array(log_probs),  # (5, 4)
        "hiddens": np.array(hiddens),      # (5, hidden_size)
        "hidden": hidden[0],
        "weights": {name: p.data.copy() for name, p in model.named_parameters()},
    }


if __name__ == "__main__":
    main()
