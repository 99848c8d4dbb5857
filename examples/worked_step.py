"""One RNN step worked by hand, with hidden size 2 and round weights, then checked against rnnkit's RNN.

    h_t = tanh(W_xh x_t + W_hh h_{t-1} + b_h)        the new hidden state (the memory)
    y_t = W_hy h_t + b_y                             scores (logits) for the next letter

Step 1 reads 'H' with an empty memory h_0 = 0; step 2 reads 'E', and now W_hh h_1 carries what was seen.
Run: python examples/worked_step.py
"""
import numpy as np

from rnnkit.scratch.losses import softmax
from rnnkit.scratch.recurrent import RNN

VOCAB = ["H", "E", "L", "O"]
W_xh = np.array([[0.5, -0.2, 0.1, 0.3],   # (hidden 2, vocabulary 4): column k is letter k's input weight
                 [-0.3, 0.4, 0.2, -0.1]])
W_hh = np.array([[0.6, -0.4],              # (2, 2): how the old memory feeds the new one
                 [0.2, 0.5]])
b_h = np.array([0.1, 0.2])
W_hy = np.array([[1.0, -1.0],              # (vocabulary 4, hidden 2)
                 [0.5, 0.5],
                 [-0.5, 1.0],
                 [0.2, -0.3]])
b_y = np.array([0.1, 0.0, -0.1, 0.0])


def fmt(v) -> str:
    return "[" + " ".join(f"{x:+.4f}" for x in np.ravel(v)) + "]"


def row(label: str, v, note: str = "") -> None:
    print(f"  {label:<22} = {fmt(v)}" + (f"   ({note})" if note else ""))


def one_hot(letter: str) -> np.ndarray:
    x = np.zeros(len(VOCAB))
    x[VOCAB.index(letter)] = 1.0
    return x


def main(letters: str = "HE") -> dict:
    h = np.zeros(2)
    steps = []
    for t, letter in enumerate(letters, start=1):
        x = one_hot(letter)
        xh, hh = W_xh @ x, W_hh @ h
        pre = xh + hh + b_h
        h_new = np.tanh(pre)
        y = W_hy @ h_new + b_y
        p = softmax(y)
        print(f"step {t}: letter '{letter}', x_{t} = {x.astype(int)}, h_{t - 1} = {fmt(h)}")
        row(f"W_xh x_{t}", xh, f"a one-hot x picks column '{letter}' of W_xh")
        row(f"W_hh h_{t - 1}", hh, "empty memory" if t == 1 else f"the memory of '{letters[:t - 1]}'")
        row("b_h", b_h)
        row("sum", pre)
        row(f"h_{t} = tanh(sum)", h_new)
        row(f"y_{t} = W_hy h_{t} + b_y", y, "scores for H E L O")
        row(f"p = softmax(y_{t})", p)
        steps.append({"letter": letter, "x": x, "h_prev": h, "W_xh_x": xh, "W_hh_h": hh, "pre": pre,
                      "h": h_new, "y": y, "p": p})
        h = h_new

    # The same numbers from the library: load the weights under PyTorch's names. rnnkit (like torch)
    # has two biases, b_ih + b_hh; put b_h in the first and zero in the second.
    rnn = RNN(input_size=4, hidden_size=2, dtype=np.float64)
    rnn.load_state_dict({"weight_ih_l0": W_xh, "weight_hh_l0": W_hh, "bias_ih_l0": b_h, "bias_hh_l0": np.zeros(2)})
    x_seq = np.stack([one_hot(c) for c in letters])[None]  # (batch 1, time, 4)
    output, h_n = rnn.forward(x_seq)
    hand = np.stack([s["h"] for s in steps])
    diff = float(np.abs(output[0] - hand).max())
    print(f"rnnkit RNN with these weights: h = {', '.join(fmt(h) for h in output[0])}")
    print(f"largest difference from the hand calculation: {diff:.1e}")
    return {"steps": steps, "rnn_output": output[0], "rnn_h_n": h_n[0, 0], "max_diff": diff}


if __name__ == "__main__":
    main()
