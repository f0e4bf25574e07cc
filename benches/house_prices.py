"""The book's house prices (D2L 5.7) in PyTorch, as `examples/kaggle_house.kiln`
trains them in kiln: the same preprocessing (pandas, as the book writes it),
the same folds, model, initialization and optimizer, so that the two 5-fold
log-RMSE figures can be compared.

    /tmp/peers/bin/pip install numpy torch pandas
    /tmp/peers/bin/python benches/house_prices.py [--hidden 0] [--epochs 100] [--lr 0.01] [--seeds 3]
    kiln train examples/kaggle_house.kiln --data ../shared/data/kaggle-house \
        --epochs 100 --batch 64 --folds 5 [--set hidden=0]

Preprocessing: over the training and test rows together, numeric columns
standardized (pandas' sample standard deviation) with missing values 0,
the other columns one-hot with a column for missing values (330 features).
Fold j holds out rows j*292 .. (j+1)*292 (the book's `k_fold_data`). The
model predicts the log price: a linear layer, or one hidden ReLU layer of
`--hidden` units before it; weights Xavier-uniform and biases zero, as
kiln's `Linear` initializes them; Adam; loss the mean squared error of the
logs; batches of 64 shuffled each epoch. The figure is the held-out RMSE of
the logs (predictions below 1 counted as 1) after the last epoch, averaged
over the folds, for each seed; then the mean over seeds.
"""

import argparse
import os
import time

import numpy as np
import pandas as pd
import torch
from torch import nn

torch.set_num_threads(2)
DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "kaggle-house")


def features():
    train = pd.read_csv(os.path.join(DATA, "kaggle_house_pred_train.csv"))
    test = pd.read_csv(os.path.join(DATA, "kaggle_house_pred_test.csv"))
    label = "SalePrice"
    both = pd.concat((train.drop(columns=["Id", label]), test.drop(columns=["Id"])))
    # The book selects `dtypes != 'object'`; pandas 3 reads words as `str`.
    numeric = both.select_dtypes(include="number").columns
    both[numeric] = both[numeric].apply(lambda x: (x - x.mean()) / x.std())
    both[numeric] = both[numeric].fillna(0)
    both = pd.get_dummies(both, dummy_na=True).astype(np.float32)
    n = train.shape[0]
    return both.values[:n], train[label].values.astype(np.float32), both.values[n:]


def model(inputs, hidden):
    layers = [nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, 1)] if hidden else [nn.Linear(inputs, 1)]
    net = nn.Sequential(*layers)
    for m in net:
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
    return net


def log_rmse(net, x, y):
    with torch.no_grad():
        price = torch.clamp(torch.exp(net(x)[:, 0]), min=1.0)
        return torch.sqrt(torch.mean((torch.log(price) - torch.log(y)) ** 2)).item()


def fold(x, y, held, args):
    keep = np.setdiff1d(np.arange(len(x)), held)
    xt, yt = torch.tensor(x[keep]), torch.tensor(y[keep])
    net = model(x.shape[1], args.hidden)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    for _ in range(args.epochs):
        order = torch.randperm(len(xt))
        for b in range(0, len(xt), args.batch):
            i = order[b:b + args.batch]
            loss = torch.mean((net(xt[i])[:, 0] - torch.log(yt[i])) ** 2)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return log_rmse(net, xt, yt), log_rmse(net, torch.tensor(x[held]), torch.tensor(y[held]))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--hidden", type=int, default=0)
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seeds", type=int, default=3)
    args = p.parse_args()
    x, y, _ = features()
    print(f"{x.shape[0]} training rows, {x.shape[1]} features")
    k, size = 5, len(x) // 5
    means = []
    for seed in range(args.seeds):
        torch.manual_seed(seed)
        start = time.perf_counter()
        held = [fold(x, y, np.arange(j * size, (j + 1) * size), args) for j in range(k)]
        valid = sum(v for _, v in held) / k
        means.append(valid)
        folds = ", ".join(f"{v:.4f}" for _, v in held)
        print(f"seed {seed}: 5-fold valid log rmse {valid:.4f} (folds {folds}; {time.perf_counter() - start:.1f} s)")
    print(f"mean over {args.seeds} seeds: {np.mean(means):.4f}")


if __name__ == "__main__":
    main()
