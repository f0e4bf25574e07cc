"""The convolutional networks' training steps side by side: LeNet,
BatchNorm-LeNet and ResNet-18 (28x28 inputs) at batch 128, in PyTorch
eager, `torch.compile` and kiln (`cargo bench --bench kiln -- cnn`), in
rounds: each round times PyTorch eager, torch.compile and kiln one after
another, and each ratio is taken within a round, so a change of the
machine's load between rounds does not land on one side only.

    python3 -m venv /tmp/peers && /tmp/peers/bin/pip install numpy torch
    /tmp/peers/bin/python benches/peers_cnn.py [--rounds 3]
    /tmp/peers/bin/python benches/peers_cnn.py --train resnet --epochs 5   # PyTorch's accuracy

`--train` trains the PyTorch model (`lenet`, `bn_lenet` or `resnet`) on
the shipped Fashion-MNIST at 28x28 as `kiln train` does (batch 128, the
book's learning rate, plain SGD, shuffled each epoch), printing each
epoch's test accuracy in evaluation mode and its time.

The PyTorch models are the book's (D2L 7.6, 8.5 and 8.6), as the examples
write them; SGD without momentum, as the book trains them.
"""

import re
import statistics
import subprocess
import sys
import time

import torch
from torch import nn

torch.set_num_threads(2)
BATCH = 128


def lenet():
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.Sigmoid(), nn.AvgPool2d(2, 2),
        nn.Conv2d(6, 16, 5), nn.Sigmoid(), nn.AvgPool2d(2, 2), nn.Flatten(),
        nn.Linear(400, 120), nn.Sigmoid(), nn.Linear(120, 84), nn.Sigmoid(), nn.Linear(84, 10))


def bn_lenet():
    return nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.BatchNorm2d(6), nn.Sigmoid(), nn.AvgPool2d(2, 2),
        nn.Conv2d(6, 16, 5), nn.BatchNorm2d(16), nn.Sigmoid(), nn.AvgPool2d(2, 2), nn.Flatten(),
        nn.Linear(256, 120), nn.BatchNorm1d(120), nn.Sigmoid(),
        nn.Linear(120, 84), nn.BatchNorm1d(84), nn.Sigmoid(), nn.Linear(84, 10))


class Residual(nn.Module):
    def __init__(self, inputs, channels, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(inputs, channels, 3, padding=1, stride=stride)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn1, self.bn2 = nn.BatchNorm2d(channels), nn.BatchNorm2d(channels)
        self.shortcut = nn.Conv2d(inputs, channels, 1, stride=stride) if stride > 1 or inputs != channels else None

    def forward(self, x):
        y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(y + (self.shortcut(x) if self.shortcut is not None else x))


def resnet18():
    layers = [nn.Conv2d(1, 64, 7, stride=2, padding=3), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
    for inputs, channels, first in [(64, 64, True), (64, 128, False), (128, 256, False), (256, 512, False)]:
        layers += [Residual(inputs, channels, 1 if first else 2), Residual(channels, channels)]
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 10)]
    return nn.Sequential(*layers)


def step_fn(model, lr):
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()

    def step(x, y):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss

    return step


def median_ms(f, runs):
    f()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def kiln_steps():
    out = subprocess.run(
        ["cargo", "bench", "--bench", "kiln", "--", "cnn"], capture_output=True, text=True, check=True
    ).stdout
    figures = {}
    for line in out.splitlines():
        m = re.match(r"\| (\S+)[^|]* \| ([\d.]+) \| ([\d.]+) \|", line)
        if m:
            figures[m.group(1)] = (float(m.group(2)), float(m.group(3)))
    return figures


def fashion_mnist(split):
    import gzip
    import os

    import numpy as np

    root = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "fashion-mnist")
    prefix = "train" if split == "train" else "t10k"

    def read(name, offset):
        path = os.path.join(root, name)
        raw = open(path, "rb").read() if os.path.exists(path) else gzip.open(path + ".gz").read()
        return np.frombuffer(raw, dtype=np.uint8, offset=offset)

    images = read(f"{prefix}-images-idx3-ubyte", 16).reshape(-1, 1, 28, 28).astype(np.float32) / 255.0
    labels = read(f"{prefix}-labels-idx1-ubyte", 8).astype(np.int64)
    return torch.from_numpy(images), torch.from_numpy(labels)


def train(name, epochs):
    make, lr = {"lenet": (lenet, 0.9), "bn_lenet": (bn_lenet, 0.1), "resnet": (resnet18, 0.01)}[name]
    torch.manual_seed(0)
    model = make()
    step = step_fn(model, lr)
    (x, y), (tx, ty) = fashion_mnist("train"), fashion_mnist("test")
    for epoch in range(epochs):
        start = time.perf_counter()
        model.train()
        order = torch.randperm(len(x))
        for i in range(0, len(x), BATCH):
            idx = order[i:i + BATCH]
            step(x[idx], y[idx])
        model.eval()
        with torch.no_grad():
            correct = sum((model(tx[i:i + 1000]).argmax(1) == ty[i:i + 1000]).sum().item()
                          for i in range(0, len(tx), 1000))
        print(f"epoch {epoch + 1}: test acc {correct / len(tx):.4f} ({time.perf_counter() - start:.1f} s)", flush=True)


def main():
    if "--train" in sys.argv:
        epochs = int(sys.argv[sys.argv.index("--epochs") + 1]) if "--epochs" in sys.argv else 5
        return train(sys.argv[sys.argv.index("--train") + 1], epochs)
    rounds = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 3
    x = torch.rand(BATCH, 1, 28, 28)
    y = torch.randint(0, 10, (BATCH,))
    models = [("lenet.kiln", lenet, 0.9, 11), ("batchnorm_lenet.kiln", bn_lenet, 0.1, 11),
              ("resnet.kiln", resnet18, 0.01, 5)]
    compile_s = {}
    steps = {}
    for name, make, lr, _ in models:
        torch.manual_seed(0)
        steps[name] = {"eager": step_fn(make(), lr)}
        compiled = step_fn(torch.compile(make()), lr)
        start = time.perf_counter()
        compiled(x, y)
        compile_s[name] = time.perf_counter() - start
        steps[name]["compile"] = compiled
    ratios = {name: {"eager": [], "compile": []} for name, *_ in models}
    for r in range(rounds):
        eager = {name: median_ms(lambda: steps[name]["eager"](x, y), runs) for name, _, _, runs in models}
        comp = {name: median_ms(lambda: steps[name]["compile"](x, y), runs) for name, _, _, runs in models}
        kiln = kiln_steps()
        for name, *_ in models:
            k = kiln[name][0]
            ratios[name]["eager"].append(k / eager[name])
            ratios[name]["compile"].append(k / comp[name])
            print(f"round {r + 1}: {name}: kiln {k:.2f} ms, eager {eager[name]:.2f} ms, "
                  f"torch.compile {comp[name]:.2f} ms", flush=True)
    print("\n| batch 128, 28x28 | kiln / PyTorch eager | kiln / torch.compile | kiln compile ms | torch.compile s |")
    print("| --- | --- | --- | --- | --- |")
    for name, *_ in models:
        print(f"| {name} | {statistics.median(ratios[name]['eager']):.2f}x | "
              f"{statistics.median(ratios[name]['compile']):.2f}x | {kiln[name][1]:.0f} | {compile_s[name]:.1f} |")


if __name__ == "__main__":
    main()
