"""The book's English-French encoder-decoders in PyTorch: the GRU
seq2seq (D2L 10.7), with Bahdanau attention (11.4) and the Transformer
(11.7), as `examples/seq2seq.kiln`, `bahdanau.kiln` and `transformer.kiln`
write them in kiln, so that the validation loss and the test sentences'
BLEU can be compared:

    /tmp/peers/bin/pip install numpy torch
    /tmp/peers/bin/python benches/translation.py [--model seq2seq|bahdanau|transformer] [--epochs 30] [--seed S]
    /tmp/peers/bin/python benches/translation.py --bench [--rounds 3]    # the Transformer's step beside kiln's
    kiln train examples/seq2seq.kiln --data ../shared/data/fra-eng/fra.txt --epochs 30 --batch 128

The same data as `kiln train` (the book's `MTFraEng`): the first 641 lines
of the pairs, lower-cased, a space before `,.!?`, word tokens ending in
`<eos>`, padded or cut to 9 steps, `<bos>` before the decoder's inputs,
vocabularies of the tokens seen at least twice; the first 512 pairs to
train on (shuffled, batches of 128), the rest to validate on. The same
models, the book's: embeddings and two-layer GRUs (`nn.GRU`, dropout 0.2)
of 256, the decoder reading the context (or, with Bahdanau attention, an
additive attention's average of the encoder's outputs) beside each
embedded token, Xavier-uniform weight matrices (`init_seq2seq`), Adam with
learning rate 0.005; or the Transformer (2 blocks, 256 hidden units, 4
heads, a feed-forward layer of 64, dropout 0.2, PyTorch's default
initialization, Adam with learning rate 0.001); gradients clipped to norm
1, 30 epochs; the loss the cross-entropy over
the targets' tokens that are not padding. Printed: each epoch's training
loss and validation loss (teacher-forced, evaluation mode, over every
valid token), then the greedy translations of the test sentences with the
book's BLEU (n-grams up to 2).
"""

import argparse
import collections
import math
import os
import time

import torch
from torch import nn
from torch.nn import functional as F

torch.set_num_threads(2)
PAIRS = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "fra-eng", "fra.txt")
TESTS = [("go .", "va !"), ("i lost .", "j'ai perdu ."), ("i'm home .", "je suis chez moi ."),
         ("i'm calm .", "je suis calme .")]
STEPS = 9


def preprocess(text):
    text = text.replace("\u202f", " ").replace("\xa0", " ").lower()
    return "".join(" " + c if i > 0 and c in ",.!?" and text[i - 1] != " " else c for i, c in enumerate(text))


def pad(tokens):
    return tokens[:STEPS] if len(tokens) > STEPS else tokens + ["<pad>"] * (STEPS - len(tokens))


class Vocab:
    def __init__(self, sentences):
        counts = collections.Counter(t for s in sentences for t in s)
        self.tokens = sorted({"<unk>"} | {t for t, n in counts.items() if n >= 2})
        self.index = {t: i for i, t in enumerate(self.tokens)}

    def __getitem__(self, t):
        return self.index.get(t, self.index["<unk>"])


def data():
    """Sources, decoder inputs, targets, the sources' valid lengths and the
    two vocabularies."""
    lines = preprocess(open(PAIRS, encoding="utf-8").read()).split("\n")[:641]
    src, tgt = [], []
    for line in lines:
        parts = line.split("\t")
        if len(parts) == 2:
            src.append(pad([t for t in f"{parts[0]} <eos>".split(" ") if t]))
            tgt.append(["<bos>"] + pad([t for t in f"{parts[1]} <eos>".split(" ") if t]))
    sv, tv = Vocab(src), Vocab(tgt)
    s = torch.tensor([[sv[t] for t in x] for x in src])
    t = torch.tensor([[tv[w] for w in x] for x in tgt])
    valid = (s != sv["<pad>"]).sum(1)
    return s, t[:, :-1], t[:, 1:], valid, sv, tv


def init_seq2seq(module):
    if type(module) is nn.Linear:
        nn.init.xavier_uniform_(module.weight)
    if type(module) is nn.GRU:
        for param in module._flat_weights_names:
            if "weight" in param:
                nn.init.xavier_uniform_(module._parameters[param])


class Seq2Seq(nn.Module):
    def __init__(self, sources, targets, embed=256, hiddens=256, layers=2, dropout=0.2):
        super().__init__()
        self.src_embedding = nn.Embedding(sources, embed)
        self.encoder = nn.GRU(embed, hiddens, layers, dropout=dropout)
        self.tgt_embedding = nn.Embedding(targets, embed)
        self.decoder = nn.GRU(embed + hiddens, hiddens, layers, dropout=dropout)
        self.dense = nn.Linear(hiddens, targets)
        self.apply(init_seq2seq)

    def forward(self, src, tgt, src_valid=None):
        enc_outputs, state = self.encoder(self.src_embedding(src.t()))
        embs = self.tgt_embedding(tgt.t())
        context = enc_outputs[-1].repeat(embs.shape[0], 1, 1)
        outputs, _ = self.decoder(torch.cat((embs, context), -1), state)
        return self.dense(outputs).swapaxes(0, 1)


class Additive(nn.Module):
    """Additive attention over keys projected once (`AdditiveAttention`)."""

    def __init__(self, hiddens):
        super().__init__()
        self.w_q, self.w_k = nn.Linear(hiddens, hiddens, bias=False), nn.Linear(hiddens, hiddens, bias=False)
        self.w_v = nn.Linear(hiddens, 1, bias=False)
        self.dropout = nn.Dropout(0.2)

    def forward(self, query, keys, values, valid):
        scores = self.w_v(torch.tanh(self.w_q(query).unsqueeze(1) + keys)).squeeze(-1)
        return (self.dropout(masked_softmax(scores, valid)).unsqueeze(1) @ values).squeeze(1)


class Bahdanau(Seq2Seq):
    def __init__(self, sources, targets, embed=256, hiddens=256, layers=2, dropout=0.2):
        super().__init__(sources, targets, embed, hiddens, layers, dropout)
        self.attention = Additive(hiddens)
        self.decoder = nn.GRU(hiddens + embed, hiddens, layers, dropout=dropout)
        self.apply(init_seq2seq)

    def forward(self, src, tgt, src_valid):
        enc_outputs, state = self.encoder(self.src_embedding(src.t()))
        values = enc_outputs.permute(1, 0, 2)
        keys = self.attention.w_k(values)
        outputs = []
        for x in self.tgt_embedding(tgt.t()):
            context = self.attention(state[-1], keys, values, src_valid)
            out, state = self.decoder(torch.cat((context, x), -1).unsqueeze(0), state)
            outputs.append(out)
        return self.dense(torch.cat(outputs, 0)).swapaxes(0, 1)


def masked_softmax(scores, valid):
    """Softmax over the last axis, entries at or after `valid` (one length
    per row of `scores`, broadcast) set to -1e6 first."""
    keep = torch.arange(scores.shape[-1]) < valid.unsqueeze(-1)
    return F.softmax(torch.where(keep, scores, torch.tensor(-1e6)), dim=-1)


class MultiHead(nn.Module):
    def __init__(self, hiddens, heads):
        super().__init__()
        self.heads = heads
        self.w = nn.ModuleList(nn.Linear(hiddens, hiddens, bias=False) for _ in range(4))
        self.dropout = nn.Dropout(0.2)

    def forward(self, q, k, v, valid):
        n, t, h = q.shape
        split = lambda x: x.reshape(n, x.shape[1], self.heads, h // self.heads).transpose(1, 2)
        q, k, v = split(self.w[0](q)), split(self.w[1](k)), split(self.w[2](v))
        weights = masked_softmax(q @ k.transpose(-1, -2) / math.sqrt(h // self.heads), valid.unsqueeze(1))
        return self.w[3]((self.dropout(weights) @ v).transpose(1, 2).reshape(n, t, h))


class AddNorm(nn.Module):
    def __init__(self, hiddens):
        super().__init__()
        self.dropout, self.norm = nn.Dropout(0.2), nn.LayerNorm(hiddens)

    def forward(self, x, y):
        return self.norm(self.dropout(y) + x)


class Block(nn.Module):
    """An encoder block, or with `cross` a decoder block."""

    def __init__(self, hiddens, inner, heads, cross):
        super().__init__()
        self.attention, self.addnorm1 = MultiHead(hiddens, heads), AddNorm(hiddens)
        if cross:
            self.cross, self.addnorm_cross = MultiHead(hiddens, heads), AddNorm(hiddens)
        self.ffn = nn.Sequential(nn.Linear(hiddens, inner), nn.ReLU(), nn.Linear(inner, hiddens))
        self.addnorm2 = AddNorm(hiddens)

    def forward(self, x, valid, encoded=None, source_valid=None):
        y = self.addnorm1(x, self.attention(x, x, x, valid))
        if encoded is not None:
            y = self.addnorm_cross(y, self.cross(y, encoded, encoded, source_valid))
        return self.addnorm2(y, self.ffn(y))


class Transformer(nn.Module):
    def __init__(self, sources, targets, hiddens=256, inner=64, heads=4, blocks=2):
        super().__init__()
        self.hiddens = hiddens
        self.src_embedding, self.tgt_embedding = nn.Embedding(sources, hiddens), nn.Embedding(targets, hiddens)
        self.encoder = nn.ModuleList(Block(hiddens, inner, heads, False) for _ in range(blocks))
        self.decoder = nn.ModuleList(Block(hiddens, inner, heads, True) for _ in range(blocks))
        self.dense = nn.Linear(hiddens, targets)
        self.dropout = nn.Dropout(0.2)
        position = torch.arange(STEPS, dtype=torch.float32).reshape(-1, 1)
        angle = position / torch.pow(10000, torch.arange(0, hiddens, 2, dtype=torch.float32) / hiddens)
        self.encoding = torch.stack((torch.sin(angle), torch.cos(angle)), 2).reshape(STEPS, hiddens)

    def embed(self, tokens, table):
        return self.dropout(table(tokens) * math.sqrt(self.hiddens) + self.encoding[:tokens.shape[1]])

    def forward(self, src, tgt, src_valid):
        n, t = tgt.shape
        per_row = src_valid.unsqueeze(1).expand(n, t)
        x = self.embed(src, self.src_embedding)
        for block in self.encoder:
            x = block(x, per_row)
        causal = torch.arange(1, t + 1).expand(n, t)
        y = self.embed(tgt, self.tgt_embedding)
        for block in self.decoder:
            y = block(y, causal, x, per_row)
        return self.dense(y)


def bleu(pred_seq, label_seq, k):
    pred_tokens, label_tokens = pred_seq.split(" "), label_seq.split(" ")
    len_pred, len_label = len(pred_tokens), len(label_tokens)
    score = math.exp(min(0, 1 - len_label / len_pred))
    for n in range(1, min(k, len_pred) + 1):
        num_matches, label_subs = 0, collections.defaultdict(int)
        for i in range(len_label - n + 1):
            label_subs[" ".join(label_tokens[i:i + n])] += 1
        for i in range(len_pred - n + 1):
            if label_subs[" ".join(pred_tokens[i:i + n])] > 0:
                num_matches += 1
                label_subs[" ".join(pred_tokens[i:i + n])] -= 1
        score *= math.pow(num_matches / (len_pred - n + 1), math.pow(0.5, n))
    return score


def masked_loss(logits, y, pad_index):
    l = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="none")
    mask = (y.reshape(-1) != pad_index).float()
    return (l * mask).sum() / mask.sum()


def bench(rounds):
    """The Transformer's training step at batch 128 (forward, masked loss,
    backward, clipping, Adam) in PyTorch eager and in kiln (`cargo bench
    --bench kiln -- transformer-step`), in rounds; the ratio of each round
    and their median."""
    import re
    import statistics
    import subprocess
    src, tgt_in, tgt_out, src_valid, sv, tv = data()
    model = Transformer(len(sv.tokens), len(tv.tokens))
    opt = torch.optim.Adam(model.parameters(), lr=0.001)
    batch = (src[:128], tgt_in[:128], tgt_out[:128], src_valid[:128])

    def step():
        loss = masked_loss(model(batch[0], batch[1], batch[3]), batch[2], tv["<pad>"])
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    ratios = []
    for r in range(rounds):
        step()
        times = []
        for _ in range(5):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        eager = statistics.median(times) * 1e3
        out = subprocess.run(["cargo", "bench", "--bench", "kiln", "--", "transformer-step"],
                             capture_output=True, text=True, check=True).stdout
        kiln = float(re.search(r"\| transformer.kiln step ms \| ([\d.]+) \|", out).group(1))
        ratios.append(kiln / eager)
        print(f"round {r + 1}: PyTorch eager {eager:.1f} ms, kiln {kiln:.1f} ms, kiln / eager {kiln / eager:.2f}", flush=True)
    print(f"median kiln / PyTorch eager: {statistics.median(ratios):.2f}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", choices=["seq2seq", "bahdanau", "transformer"], default="seq2seq")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bench", action="store_true", help="time the Transformer's step beside kiln's, in rounds")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    if args.bench:
        return bench(args.rounds)
    torch.manual_seed(args.seed)
    src, tgt_in, tgt_out, src_valid, sv, tv = data()
    print(f"{len(src)} pairs, vocabularies {len(sv.tokens)} and {len(tv.tokens)}")
    kind = {"seq2seq": Seq2Seq, "bahdanau": Bahdanau, "transformer": Transformer}[args.model]
    model = kind(len(sv.tokens), len(tv.tokens))
    opt = torch.optim.Adam(model.parameters(), lr=0.001 if args.model == "transformer" else 0.005)
    start = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(512)
        total = 0.0
        for b in range(0, 512, 128):
            i = order[b:b + 128]
            loss = masked_loss(model(src[i], tgt_in[i], src_valid[i]), tgt_out[i], tv["<pad>"])
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            total += float(loss) * len(i)
        model.eval()
        with torch.no_grad():
            valid = float(masked_loss(model(src[512:], tgt_in[512:], src_valid[512:]), tgt_out[512:], tv["<pad>"]))
        print(f"epoch {epoch + 1}: train loss {total / 512:.4f}, valid loss {valid:.4f} "
              f"({time.perf_counter() - start:.1f} s)", flush=True)
    model.eval()
    with torch.no_grad():
        for en, fr in TESTS:
            tokens = pad([t for t in f"{preprocess(en)} <eos>".split(" ") if t])
            s = torch.tensor([[sv[t] for t in tokens]])
            s_valid = torch.tensor([sum(t != "<pad>" for t in tokens)])
            out = [tv["<bos>"]]
            for step in range(STEPS):
                y = model(s, torch.tensor([out + [tv["<pad>"]] * (STEPS - len(out))]), s_valid)
                token = int(y[0, step].argmax())
                if tv.tokens[token] == "<eos>":
                    break
                out.append(token)
            translation = " ".join(tv.tokens[t] for t in out[1:])
            print(f"{en} => {translation}, bleu {bleu(translation, fr, 2):.3f}")


if __name__ == "__main__":
    main()
