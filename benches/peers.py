"""Side-by-side benchmarks: the same matmul and MLP training step in JAX (and
PyTorch, if installed) as kiln's bench binary measures, run in one session so
each kiln figure is a ratio against a peer measured minutes apart.

    python3 -m venv /tmp/peers && /tmp/peers/bin/pip install jax numpy
    /tmp/peers/bin/python benches/peers.py          # runs `cargo bench` too

Every figure is a median of repeated runs after a warm-up.
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
    import jax
    import jax.numpy as jnp

    out = {}
    key = jax.random.PRNGKey(0)
    a = jax.random.uniform(key, (1024, 1024), jnp.float32)
    b = jax.random.uniform(key, (1024, 1024), jnp.float32)
    mm = jax.jit(lambda x, y: x @ y)
    t = median_time(lambda: mm(a, b).block_until_ready(), 9)
    out["matmul 1024 GFLOP/s"] = 2 * 1024**3 / t / 1e9

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
    t = median_time(lambda: jax.block_until_ready(step(params, x, y, key)), 21)
    out["MLP step ms"] = t * 1e3
    return out


def torch_figures():
    try:
        import torch
    except ImportError:
        return None
    out = {}
    a, b = torch.rand(1024, 1024), torch.rand(1024, 1024)
    t = median_time(lambda: a @ b, 9)
    out["matmul 1024 GFLOP/s"] = 2 * 1024**3 / t / 1e9
    model = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Dropout(0.2), torch.nn.Linear(256, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, weight_decay=1e-4)
    x, y = torch.rand(256, 784), torch.randint(0, 10, (256,))

    def step():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    out["MLP step ms"] = median_time(step, 21) * 1e3
    return out


def kiln_figures(root):
    text = subprocess.run(
        ["cargo", "bench", "--quiet", "--bench", "kiln", "--", "matmul", "step", "compile"],
        cwd=root, check=True, capture_output=True, text=True,
    ).stdout
    out = {}
    m = re.search(r"^\| 1024 \| ([0-9.]+) \|", text, re.M)
    if m:
        out["matmul 1024 GFLOP/s"] = float(m.group(1))
    m = re.search(r"^\| mlp\.kiln \| ([0-9.]+) \|", text, re.M)
    if m:
        out["MLP step ms"] = float(m.group(1))
    m = re.search(r"^\| examples/mlp\.kiln \| ([0-9.]+) \|", text, re.M)
    if m:
        out["MLP step compile ms"] = float(m.group(1))
    return out


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    peers = {"JAX (jax.jit, CPU)": jax_figures()}
    torch = torch_figures()
    if torch is not None:
        peers["PyTorch (eager)"] = torch
    kiln = kiln_figures(root)
    print("| figure | kiln | " + " | ".join(peers) + " | " + " | ".join(f"kiln / {p}" for p in peers) + " |")
    print("| --- " * (2 + 2 * len(peers)) + "|")
    for name in ["matmul 1024 GFLOP/s", "MLP step ms", "MLP step compile ms"]:
        k = kiln.get(name)
        row = [name, f"{k:.2f}" if k is not None else "n/a"]
        row += [f"{p[name]:.2f}" if name in p else "n/a" for p in peers.values()]
        row += [f"{k / p[name]:.2f}" if k is not None and name in p else "n/a" for p in peers.values()]
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
