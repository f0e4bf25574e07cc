"""Side-by-side benchmarks: the same matmul (1 and 2 threads), MLP training
step, LeNet forward pass and training step (batch 256; PyTorch only) and
10-epoch MLP training run in JAX and PyTorch (each if installed)
as kiln's bench binary and `kiln train` measure, run in one session so each
kiln figure is a ratio against a peer measured minutes apart.

    python3 -m venv /tmp/peers && /tmp/peers/bin/pip install jax numpy torch
    /tmp/peers/bin/python benches/peers.py [--no-train] [--rounds 15]   # runs `cargo bench` too

Every figure is a median of repeated runs after a warm-up, except the
training runs, which are timed once each (wall time of the whole run).
The MLP step, the figure issue 5's targets are about, is timed in rounds:
kiln, JAX and PyTorch one after another in each round, and each ratio is
taken within a round, so a change in the machine's load between rounds
does not land on one side only.
"""

import os
import re
import statistics
import subprocess
import sys
import time


def median_time(f, runs):
    f()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def jax_figures():
    try:
        import jax
    except ImportError:
        return None, None
    import jax.numpy as jnp

    out = {}
    key = jax.random.PRNGKey(0)
    a = jax.random.uniform(key, (1024, 1024), jnp.float32)
    b = jax.random.uniform(key, (1024, 1024), jnp.float32)
    mm = jax.jit(lambda x, y: x @ y)
    t = median_time(lambda: mm(a, b).block_until_ready(), 9)
    out["matmul 1024 GFLOP/s, 2 threads"] = 2 * 1024**3 / t / 1e9

    def init(k, n_in, n_out):
        bound = (6.0 / (n_in + n_out)) ** 0.5
        return jax.random.uniform(k, (n_in, n_out), jnp.float32, -bound, bound), jnp.zeros((n_out,), jnp.float32)

    k1, k2 = jax.random.split(key)
    params = [*init(k1, 784, 256), *init(k2, 256, 10)]

    def loss(params, x, y, key):
        w1, b1, w2, b2 = params
        h = jax.nn.relu(x @ w1 + b1)
        keep = jax.random.uniform(key, h.shape) >= 0.2
        h = jnp.where(keep, h / 0.8, 0.0)
        logits = h @ w2 + b2
        logp = jax.nn.log_softmax(logits)
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

    @jax.jit
    def step(params, x, y, key):
        value, grads = jax.value_and_grad(loss)(params, x, y, key)
        return value, [p - 0.1 * (g + 1e-4 * p) for p, g in zip(params, grads)]

    x = jax.random.uniform(key, (256, 784), jnp.float32)
    y = jax.random.randint(key, (256,), 0, 10)
    start = time.perf_counter()
    jax.block_until_ready(step(params, x, y, key))
    out["MLP step compile ms"] = (time.perf_counter() - start) * 1e3
    return out, lambda: median_time(lambda: jax.block_until_ready(step(params, x, y, key)), 21) * 1e3


def torch_figures():
    try:
        import torch
    except ImportError:
        return None, None
    out = {}
    a, b = torch.rand(1024, 1024), torch.rand(1024, 1024)
    for threads in [1, 2]:
        torch.set_num_threads(threads)
        t = median_time(lambda: a @ b, 21)
        out[f"matmul 1024 GFLOP/s, {threads} threads"] = 2 * 1024**3 / t / 1e9
    torch.set_num_threads(os.cpu_count())
    model = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Dropout(0.2), torch.nn.Linear(256, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, weight_decay=1e-4)
    x, y = torch.rand(256, 784), torch.randint(0, 10, (256,))

    def step():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    lenet = torch.nn.Sequential(
        torch.nn.Conv2d(1, 6, kernel_size=5, padding=2), torch.nn.Sigmoid(), torch.nn.AvgPool2d(2, 2),
        torch.nn.Conv2d(6, 16, kernel_size=5), torch.nn.Sigmoid(), torch.nn.AvgPool2d(2, 2), torch.nn.Flatten(),
        torch.nn.Linear(400, 120), torch.nn.Sigmoid(), torch.nn.Linear(120, 84), torch.nn.Sigmoid(),
        torch.nn.Linear(84, 10),
    )
    lenet_opt = torch.optim.SGD(lenet.parameters(), lr=0.9)
    images = torch.rand(256, 1, 28, 28)

    def lenet_forward():
        with torch.no_grad():
            lenet(images)

    def lenet_step():
        lenet_opt.zero_grad()
        torch.nn.functional.cross_entropy(lenet(images), y).backward()
        lenet_opt.step()

    out["LeNet forward ms"] = median_time(lenet_forward, 21) * 1e3
    out["LeNet step ms"] = median_time(lenet_step, 21) * 1e3
    return out, lambda: median_time(step, 21) * 1e3


def read_idx(path):
    import gzip
    import numpy as np

    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def torch_training(data):
    """kiln train's MLP run in PyTorch eager, as the book's `train_ch3`
    loop: 10 epochs of batch 256, one forward pass per batch whose logits
    give both the loss and the training accuracy, then the update, and the
    test accuracy after each epoch. Returns (seconds, test accuracy)."""
    import torch

    start = time.perf_counter()
    load = lambda name: read_idx(os.path.join(data, name))
    x = torch.tensor(load("train-images-idx3-ubyte.gz").reshape(-1, 784), dtype=torch.float32) / 255
    y = torch.tensor(load("train-labels-idx1-ubyte.gz"), dtype=torch.long)
    xt = torch.tensor(load("t10k-images-idx3-ubyte.gz").reshape(-1, 784), dtype=torch.float32) / 255
    yt = torch.tensor(load("t10k-labels-idx1-ubyte.gz"), dtype=torch.long)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Dropout(0.2), torch.nn.Linear(256, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, weight_decay=1e-4)
    for _ in range(10):
        model.train()
        loss_sum, correct, seen = 0.0, 0, 0
        for batch in torch.randperm(len(x)).split(256):
            xb, yb = x[batch], y[batch]
            y_hat = model(xb)
            loss = torch.nn.functional.cross_entropy(y_hat, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_sum += loss.item() * len(yb)
            correct += int((y_hat.argmax(1) == yb).sum())
            seen += len(yb)
        model.eval()
        with torch.no_grad():
            accuracy = (model(xt).argmax(1) == yt).float().mean().item()
    return time.perf_counter() - start, accuracy


def kiln_training(root, data):
    """`kiln train examples/mlp.kiln` for 10 epochs: (wall seconds, test accuracy)."""
    subprocess.run(["cargo", "build", "--quiet", "--release"], cwd=root, check=True)
    start = time.perf_counter()
    text = subprocess.run(
        [os.path.join(root, "target", "release", "kiln"), "train", "examples/mlp.kiln", "--data", data, "--epochs", "10"],
        cwd=root, check=True, capture_output=True, text=True,
    )
    seconds = time.perf_counter() - start
    accuracies = re.findall(r"test acc(?:uracy)?[ =:]+([0-9.]+)", text.stdout + text.stderr)
    return seconds, float(accuracies[-1]) if accuracies else float("nan")


def kiln_bench(root, *args):
    return subprocess.run(
        ["cargo", "bench", "--quiet", "--bench", "kiln", "--", *args],
        cwd=root, check=True, capture_output=True, text=True,
    ).stdout


def kiln_figures(root):
    out = {}
    for threads in [1, 2]:
        text = kiln_bench(root, "matmul", "--threads", str(threads))
        m = re.search(r"^\| 1024 \| ([0-9.]+) \|", text, re.M)
        if m:
            out[f"matmul 1024 GFLOP/s, {threads} threads"] = float(m.group(1))
    text = kiln_bench(root, "conv")
    # The conv table's rows: example and batch, function, then each
    # lowering's ms; the last column is the default (`auto`).
    for function, name in [("forward", "LeNet forward ms"), ("train_step", "LeNet step ms")]:
        m = re.search(rf"^\| lenet\.kiln, 256 \| {function} \|.* ([0-9.]+) \|$", text, re.M)
        if m:
            out[name] = float(m.group(1))
    text = kiln_bench(root, "compile")
    m = re.search(r"^\| examples/mlp\.kiln \| ([0-9.]+) \|", text, re.M)
    if m:
        out["MLP step compile ms"] = float(m.group(1))
    return out


def kiln_step(root):
    """The MLP step in a kiln session, median of 41 (`cargo bench -- jit-step`)."""
    text = kiln_bench(root, "jit-step")
    m = re.search(r"JIT session \| ([0-9.]+) \|", text)
    if not m:
        raise SystemExit(f"no step time in the bench's output:\n{text}")
    return float(m.group(1))


def step_rounds(root, timers, rounds):
    """The MLP step of kiln and of each peer, timed in turn in every round
    (each a median of 21-41 steps), so that the machine's load drifts over
    all of them alike. Prints every round and returns, per peer, the median
    step time and the median and range of the per-round ratios."""
    names = ["kiln", *timers]
    print(f"MLP step, batch 256, {rounds} rounds (ms; each a median of 21-41 steps):\n")
    print("| round | " + " | ".join(names) + " | " + " | ".join(f"kiln / {p}" for p in timers) + " |")
    print("| --- " * (1 + len(names) + len(timers)) + "|")
    times = {n: [] for n in names}
    ratios = {p: [] for p in timers}
    for r in range(rounds):
        times["kiln"].append(kiln_step(root))
        for p, timer in timers.items():
            times[p].append(timer())
            ratios[p].append(times["kiln"][-1] / times[p][-1])
        cells = [f"{times[n][-1]:.2f}" for n in names] + [f"{ratios[p][-1]:.2f}" for p in timers]
        print(f"| {r + 1} | " + " | ".join(cells) + " |", flush=True)
    print()
    return {n: statistics.median(t) for n, t in times.items()}, {
        p: (statistics.median(v), min(v), max(v)) for p, v in ratios.items()
    }


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    rounds = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 15
    peers, timers = {}, {}
    for name, figures in [("JAX (jax.jit, CPU)", jax_figures), ("PyTorch (eager)", torch_figures)]:
        out, timer = figures()
        if out is not None:
            peers[name], timers[name] = out, timer
    kiln = kiln_figures(root)
    steps, ratios = step_rounds(root, timers, rounds)
    kiln["MLP step ms"] = steps["kiln"]
    for name in peers:
        peers[name]["MLP step ms"] = steps[name]
    data = os.path.join(root, "..", "shared", "data", "fashion-mnist")
    if "--no-train" not in sys.argv and os.path.isdir(data):
        kiln["MLP 10 epochs s"], kiln["MLP 10 epochs test accuracy"] = kiln_training(root, data)
        if "PyTorch (eager)" in peers:
            torch = peers["PyTorch (eager)"]
            torch["MLP 10 epochs s"], torch["MLP 10 epochs test accuracy"] = torch_training(data)
    print("| figure | kiln | " + " | ".join(peers) + " | " + " | ".join(f"kiln / {p}" for p in peers) + " |")
    print("| --- " * (2 + 2 * len(peers)) + "|")
    names = ["matmul 1024 GFLOP/s, 1 threads", "matmul 1024 GFLOP/s, 2 threads", "MLP step ms", "MLP step compile ms"]
    names += ["LeNet forward ms", "LeNet step ms"]
    names += ["MLP 10 epochs s", "MLP 10 epochs test accuracy"]
    for name in names:
        k = kiln.get(name)
        row = [name, f"{k:.2f}" if k is not None else "n/a"]
        row += [f"{p[name]:.2f}" if name in p else "n/a" for p in peers.values()]
        row += [f"{k / p[name]:.2f}" if k is not None and name in p else "n/a" for p in peers.values()]
        print("| " + " | ".join(row) + " |")
    print("\nMLP step times are medians over the rounds; per-round ratios kiln / peer:")
    for name, (median, low, high) in ratios.items():
        print(f"- {name}: median {median:.2f}, range {low:.2f}-{high:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
