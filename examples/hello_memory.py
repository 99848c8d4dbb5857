"""Why a recurrent network needs its memory: next-letter prediction on "HELLO".

Inputs H E L L, targets E L L O. After "HEL" the next letter is L, after "HELL" it is O, yet the current
letter is L both times: only the memory h_{t-1} tells the two apart. We train the same model twice:
  * an RNN (Embedding -> RNN -> Linear at every step, cross-entropy at every step, Adam);
  * a memoryless copy, its recurrent weight W_hh zeroed and frozen, so h_t depends on the current letter
    only. It sees L twice with different answers, so the best it can do is p(L) = p(O) = 1/2 there:
    its loss cannot go below 2 ln 2 / 4 = 0.347, and it gets at most one of the two right.
Run: python examples/hello_memory.py
"""
import math

import numpy as np

from rnnkit.scratch.layers import Embedding, Linear
from rnnkit.scratch.losses import cross_entropy, softmax
from rnnkit.scratch.module import Module, make_rng
from rnnkit.scratch.optim import Adam
from rnnkit.scratch.recurrent import RNN

WORD = "HELLO"
VOCAB = list(dict.fromkeys(WORD))  # H, E, L, O
IDS = np.array([[VOCAB.index(c) for c in WORD]])  # (batch 1, time 5)
INPUTS, TARGETS = IDS[:, :-1], IDS[:, 1:]         # H E L L  ->  E L L O


class CharRNN(Module):
    def __init__(self, vocab=4, embed=8, hidden=16, rng=None):
        rng = make_rng(rng)
        self.embed = Embedding(vocab, embed, rng=rng)
        self.rnn = RNN(embed, hidden, rng=rng)
        self.head = Linear(hidden, vocab, rng=rng)

    def forward(self, x):                           # x: (batch, time) letter ids
        output, _ = self.rnn.forward(self.embed.forward(x))
        return self.head.forward(output)            # (batch, time, vocab): scores at every step

    def backward(self, dlogits):
        doutput = self.head.backward(dlogits)
        dx, _ = self.rnn.backward(doutput)          # backprop through time
        self.embed.backward(dx)


def train(model, params, steps, lr):
    opt = Adam(params, lr=lr)
    for _ in range(steps):
        model.zero_grad()
        loss, dlogits = cross_entropy(model.forward(INPUTS), TARGETS)
        model.backward(dlogits)
        opt.step()
    loss, _ = cross_entropy(model.forward(INPUTS), TARGETS)
    return loss, softmax(model.forward(INPUTS))[0]  # final loss, (time, vocab) probabilities


def main(steps: int = 150, lr: float = 0.02, seed: int = 0) -> dict:
    rnn = CharRNN(rng=seed)
    rnn_loss, rnn_probs = train(rnn, rnn.parameters(), steps, lr)

    flat = CharRNN(rng=seed)
    flat.rnn.weight_hh_l0.data[...] = 0.0           # no memory: h_t = tanh(W_ih x_t + b)
    trainable = [p for name, p in flat.named_parameters() if name != "rnn.weight_hh_l0"]
    flat_loss, flat_probs = train(flat, trainable, steps, lr)

    contexts = [WORD[:t + 1] for t in range(len(WORD) - 1)]
    answers = [VOCAB[i] for i in TARGETS[0]]
    print(f"{'seen':<6}{'next':<6}{'RNN (with memory)':<22}memoryless (W_hh = 0)")
    result = {"contexts": contexts, "answers": answers}
    for name, probs in (("rnn", rnn_probs), ("memoryless", flat_probs)):
        result[name] = [VOCAB[i] for i in probs.argmax(axis=1)]
    for t, (ctx, ans) in enumerate(zip(contexts, answers)):
        cells = []
        for name, probs in (("rnn", rnn_probs), ("memoryless", flat_probs)):
            guess = result[name][t]
            cells.append(f"{guess} p={probs[t].max():.2f} {'ok' if guess == ans else 'WRONG'}")
        print(f"{ctx:<6}{ans:<6}{cells[0]:<22}{cells[1]}")
    print(f"final loss: RNN {rnn_loss:.4f}, memoryless {flat_loss:.4f} "
          f"(its floor is 2 ln 2 / 4 = {2 * math.log(2) / 4:.4f})")
    print("The memoryless model sees 'L' in both HEL and HELL, so it must give the same answer twice.")
    result.update(rnn_loss=rnn_loss, memoryless_loss=flat_loss, rnn_probs=rnn_probs, memoryless_probs=flat_probs)
    return result


if __name__ == "__main__":
    main()
