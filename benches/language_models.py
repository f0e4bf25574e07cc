"""The book's character language models on "The Time Machine" (D2L 9.5,
10.1, 10.2) in PyTorch, as `examples/rnn_lm.kiln`, `gru_lm.kiln` and
`lstm_lm.kiln` write them in kiln, so that perplexities can be compared:

    /tmp/peers/bin/pip install numpy torch
    /tmp/peers/bin/python benches/language_models.py [--model rnn|gru|lstm] [--epochs E] [--seed S]
    /tmp/peers/bin/python benches/language_models.py --bench [--rounds 3]
    kiln train examples/rnn_lm.kiln --data ../shared/data/timemachine --epochs 100 --batch 1024

`--model deep` is `examples/deep_rnn.kiln` (two RNN layers, learning rate
2, 100 epochs). The same data as `kiln train`: the corpus preprocessed as the book does
(runs of non-letters to one space, lower case, one token per character,
28 tokens sorted), the subsequences of 32 characters at every offset, the
first 10,000 to train on (shuffled, batches of 1024) and the next 5,000 to
validate on. The same models, written from scratch as the book writes
them: 32 hidden units, weights normal with standard deviation 0.01, biases
zero; plain SGD (learning rate 1 for the RNN, 4 for the GRU and LSTM) with
gradients clipped to global norm 1; 100 epochs for the RNN, 50 for the
others. Printed: each epoch's training perplexity (exp of the mean batch
loss, weighted by batch size) and the validation perplexity (exp of the
mean cross-entropy over every validation token) after it, and the
greedy continuation of "time traveller".

`--bench` times one training step of the GRU language model (batch 1024,
32 steps, forward, loss, backward, clipping and SGD) in rounds: PyTorch
eager with the book's from-scratch GRU, PyTorch eager with `nn.GRU` on
one-hot inputs (the book's concise GRU), `torch.compile` of the
from-scratch step, and kiln (`cargo bench --bench kiln -- gru-step`), one
after another in each round; each ratio is taken within a round and the
medians are printed, with tokens per second.
"""

import argparse
import math
import os
import re
import statistics
import subprocess
import time

import torch
from torch.nn import functional as F

torch.set_num_threads(2)
TEXT = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "timemachine", "timemachine.txt")
SETTINGS = {"rnn": (1.0, 100), "gru": (4.0, 50), "lstm": (4.0, 50), "deep": (2.0, 100)}


def corpus():
    text = re.sub("[^A-Za-z]+", " ", open(TEXT).read()).lower()
    vocab = sorted(set(text) | {"<unk>"})
    index = {t: i for i, t in enumerate(vocab)}
    return torch.tensor([index[c] for c in text]), vocab, index


def weights(*shape):
    return (torch.randn(*shape) * 0.01).requires_grad_()


def zeros(*shape):
    return torch.zeros(*shape).requires_grad_()


class Scratch:
    """The book's RNNScratch, GRUScratch, LSTMScratch or StackedRNNScratch
    (two RNN layers, "deep") and RNNLMScratch."""

    def __init__(self, kind, vocab, hiddens=32):
        self.kind, self.hiddens = kind, hiddens
        gates = {"rnn": 1, "gru": 3, "lstm": 4, "deep": 2}[kind]
        # The deep model's second layer reads the first's state.
        self.w_x = [weights(vocab if g == 0 or kind != "deep" else hiddens, hiddens) for g in range(gates)]
        self.w_h = [weights(hiddens, hiddens) for _ in range(gates)]
        self.b = [zeros(hiddens) for _ in range(gates)]
        self.w_hq, self.b_q = weights(hiddens, vocab), zeros(vocab)

    def params(self):
        return self.w_x + self.w_h + self.b + [self.w_hq, self.b_q]

    def begin(self, n):
        h = torch.zeros(n, self.hiddens)
        return (h, torch.zeros(n, self.hiddens)) if self.kind in ("lstm", "deep") else (h,)

    def step(self, x, state):
        # x: token indices [N]; x @ W for a one-hot x is a row of W. The
        # first state is the one the output layer reads.
        h = state[0]
        if self.kind == "deep":
            h1 = torch.tanh(self.w_x[0][x] + state[1] @ self.w_h[0] + self.b[0])
            return (torch.tanh(h1 @ self.w_x[1] + h @ self.w_h[1] + self.b[1]), h1)
        xw = [w[x] for w in self.w_x]
        if self.kind == "rnn":
            return (torch.tanh(xw[0] + h @ self.w_h[0] + self.b[0]),)
        if self.kind == "gru":
            z = torch.sigmoid(xw[0] + h @ self.w_h[0] + self.b[0])
            r = torch.sigmoid(xw[1] + h @ self.w_h[1] + self.b[1])
            candidate = torch.tanh(xw[2] + (r * h) @ self.w_h[2] + self.b[2])
            return (z * h + (1 - z) * candidate,)
        i, f, o = (torch.sigmoid(xw[k] + h @ self.w_h[k] + self.b[k]) for k in range(3))
        c = f * state[1] + i * torch.tanh(xw[3] + h @ self.w_h[3] + self.b[3])
        return (o * torch.tanh(c), c)

    def forward(self, x):
        state, outputs = self.begin(x.shape[0]), []
        for t in range(x.shape[1]):
            state = self.step(x[:, t], state)
            outputs.append(state[0])
        return torch.stack(outputs, 1) @ self.w_hq + self.b_q


def clip_and_step(params, lr):
    with torch.no_grad():
        norm = torch.sqrt(sum((q.grad ** 2).sum() for q in params))
        scale = torch.clamp(1.0 / norm, max=1.0)
        for q in params:
            q -= lr * scale * q.grad
            q.grad = None


def timed(step, runs=7):
    step()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def kiln_gru_step():
    out = subprocess.run(["cargo", "bench", "--bench", "kiln", "--", "gru-step"],
                         capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        m = re.match(r"\| gru_lm.kiln \| 32 \| ([\d.]+) \| ([\d.]+) \|", line)
        if m:
            return float(m.group(2))
    raise SystemExit("no gru_lm.kiln line in: " + out)


def bench(rounds):
    tokens, vocab, _ = corpus()
    windows = tokens.unfold(0, 33, 1)
    x, y = windows[:1024, :-1], windows[:1024, 1:]
    scratch = Scratch("gru", len(vocab))

    def scratch_step():
        loss = F.cross_entropy(scratch.forward(x).reshape(-1, len(vocab)), y.reshape(-1))
        loss.backward()
        clip_and_step(scratch.params(), 4.0)

    gru, dense = torch.nn.GRU(len(vocab), 32), torch.nn.Linear(32, len(vocab))
    concise = list(gru.parameters()) + list(dense.parameters())

    def concise_step():
        outputs, _ = gru(F.one_hot(x.T, len(vocab)).float())
        loss = F.cross_entropy(dense(outputs).reshape(-1, len(vocab)), y.T.reshape(-1))
        loss.backward()
        clip_and_step(concise, 4.0)

    compiled_loss = torch.compile(
        lambda: F.cross_entropy(scratch.forward(x).reshape(-1, len(vocab)), y.reshape(-1)))

    def compiled_step():
        compiled_loss().backward()
        clip_and_step(scratch.params(), 4.0)

    compiled_step()  # compiles
    names = ["PyTorch eager, from scratch", "PyTorch eager, nn.GRU", "torch.compile, from scratch"]
    ratios = {n: [] for n in names}
    kiln_times = []
    for r in range(rounds):
        times = [timed(scratch_step), timed(concise_step), timed(compiled_step)]
        k = kiln_gru_step()
        kiln_times.append(k)
        print(f"round {r + 1}: " + ", ".join(f"{n} {t:.2f} ms" for n, t in zip(names, times)) + f", kiln {k:.2f} ms",
              flush=True)
        for n, t in zip(names, times):
            ratios[n].append(t / k)
    k = statistics.median(kiln_times)
    print(f"\nkiln: {k:.2f} ms a step, {1024 * 32 / k * 1e3:.0f} tokens/s (median of {rounds} rounds)")
    for n in names:
        print(f"kiln's throughput / {n}'s: {statistics.median(ratios[n]):.2f}x (median of the rounds' ratios)")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", choices=SETTINGS, default="rnn", help="deep: two RNN layers (D2L 10.3)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bench", action="store_true")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    if args.bench:
        return bench(args.rounds)
    lr, epochs = SETTINGS[args.model]
    epochs = args.epochs or epochs
    torch.manual_seed(args.seed)
    tokens, vocab, index = corpus()
    steps = 32
    windows = tokens.unfold(0, steps + 1, 1)
    x, y = windows[:, :-1], windows[:, 1:]
    train, valid = slice(0, 10000), slice(10000, 15000)
    model = Scratch(args.model, len(vocab))
    params = model.params()
    start = time.perf_counter()
    for epoch in range(epochs):
        order = torch.randperm(10000)
        total, seen = 0.0, 0
        for b in range(0, 10000, 1024):
            i = order[b:b + 1024]
            logits = model.forward(x[train][i])
            loss = F.cross_entropy(logits.reshape(-1, len(vocab)), y[train][i].reshape(-1))
            for q in params:
                q.grad = None
            loss.backward()
            with torch.no_grad():
                norm = math.sqrt(sum(float((q.grad ** 2).sum()) for q in params))
                for q in params:
                    if norm > 1.0:
                        q.grad *= 1.0 / norm
                    q -= lr * q.grad
            total += float(loss) * len(i)
            seen += len(i)
        with torch.no_grad():
            logits = model.forward(x[valid])
            valid_loss = float(F.cross_entropy(logits.reshape(-1, len(vocab)), y[valid].reshape(-1)))
        print(f"epoch {epoch + 1}: train perplexity {math.exp(total / seen):.3f}, "
              f"valid perplexity {math.exp(valid_loss):.3f} ({time.perf_counter() - start:.1f} s)", flush=True)
    with torch.no_grad():
        prefix = "time traveller"
        state, out = model.begin(1), [index[prefix[0]]]
        for i in range(len(prefix) + 50 - 1):
            state = model.step(torch.tensor([out[-1]]), state)
            out.append(index[prefix[i + 1]] if i + 1 < len(prefix) else int((state[0] @ model.w_hq + model.b_q).argmax()))
        print("".join(vocab[t] for t in out))


if __name__ == "__main__":
    main()
