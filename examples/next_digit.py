"""Predict the next digit of 0,1,2,3,0,1,2,3,... from the two digits before it.

Model: Embedding (digit -> vector) -> RNN over the window -> Linear on the last hidden state -> 4 scores.
Loss: cross-entropy; optimiser: Adam. Every part's backward is called by hand, in reverse order.

The seed notebook got this wrong twice. Its window loop read seq[i + 2] up to the last i, past the end of
the list (IndexError). Once the loop stopped in time, the list was a single period [0, 1, 2, 3], which
holds only two windows, [0,1]->2 and [1,2]->3: its test input [2,3] was never trained on, and the model
answered 2. Windows cut from the *repeating* sequence hold all four cases, [2,3]->0 and [3,0]->1 included.
Run: python examples/next_digit.py
"""
import numpy as np

from rnnkit.scratch.layers import Embedding, Linear
from rnnkit.scratch.losses import cross_entropy, softmax
from rnnkit.scratch.module import Module, make_rng
from rnnkit.scratch.optim import Adam
from rnnkit.scratch.recurrent import RNN

PERIOD, WINDOW = [0, 1, 2, 3], 2


def make_windows(seq, window):
    """All (window, next) pairs: the last window starts at len(seq) - window - 1, so seq[i + window] exists."""
    n = len(seq) - window
    return np.array([seq[i:i + window] for i in range(n)]), np.array([seq[i + window] for i in range(n)])


class DigitRNN(Module):
    def __init__(self, vocab=4, embed=8, hidden=16, rng=None):
        rng = make_rng(rng)
        self.embed = Embedding(vocab, embed, rng=rng)
        self.rnn = RNN(embed, hidden, rng=rng)
        self.head = Linear(hidden, vocab, rng=rng)

    def forward(self, x):                         # x: (batch, window) digits
        _, h_n = self.rnn.forward(self.embed.forward(x))
        return self.head.forward(h_n[-1])         # (batch, vocab) scores from the last hidden state

    def backward(self, dlogits):
        dh = self.head.backward(dlogits)          # -> gradient of the last hidden state
        dx, _ = self.rnn.backward(None, dh[None])  # backprop through time, into the embeddings
        self.embed.backward(dx)


def main(steps: int = 120, lr: float = 0.01, seed: int = 0) -> dict:
    seq = PERIOD * 3                              # 0,1,2,3,0,1,2,3,0,1,2,3
    x, y = make_windows(seq, WINDOW)
    print(f"sequence {seq}")
    print(f"{len(x)} training windows; the distinct ones: "
          + ", ".join(f"{a}->{b}" for a, b in zip(x[:4].tolist(), y[:4].tolist())))
    print(f"(the notebook cut windows from one period {PERIOD}: only {len(make_windows(PERIOD, WINDOW)[0])}, "
          "[0, 1]->2 and [1, 2]->3,\n so it never trained on [2, 3], and then asked for [2, 3])")

    model = DigitRNN(rng=seed)
    opt = Adam(model.parameters(), lr=lr)
    losses = []
    for step in range(1, steps + 1):
        opt.zero_grad()
        loss, dlogits = cross_entropy(model.forward(x), y)
        model.backward(dlogits)
        opt.step()
        losses.append(loss)
        if step == 1 or step % 20 == 0:
            print(f"  step {step:3d}  loss {loss:.4f}")

    windows, targets = x[:4], y[:4]
    model.eval()
    probs = softmax(model.forward(windows))
    predictions = probs.argmax(axis=1)
    final_loss, _ = cross_entropy(model.forward(x), y)
    for w, t, p, pr in zip(windows.tolist(), targets.tolist(), predictions.tolist(), probs):
        print(f"  {w} -> predicts {p} (p={pr[p]:.3f}), answer {t}  {'ok' if p == t else 'WRONG'}")
    correct = int((predictions == targets).sum())
    print(f"{correct}/4 windows right, final loss {final_loss:.4f}")
    return {"windows": windows.tolist(), "targets": targets.tolist(), "predictions": predictions.tolist(),
            "correct": correct, "losses": losses, "final_loss": final_loss}


if __name__ == "__main__":
    main()
