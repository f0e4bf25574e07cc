#!/usr/bin/env bash
# Seeds the corpora of `ir_run` and `readers` (run from `fuzz/`, after
# `cargo build --release` in the repository root):
#   corpus/ir_run   the graph IR of the small examples and the `ok` filetests,
#                   each model's functions and its training step;
#   corpus/readers  an NPY file of each dtype kiln reads, a safetensors
#                   checkpoint, and IDX images and labels, raw and gzip
#                   (cut from the shipped Fashion-MNIST).
set -euo pipefail
kiln=../target/release/kiln
data=../../shared/data/fashion-mnist
mkdir -p corpus/ir_run corpus/readers
for f in ../examples/{linear_regression,softmax_regression,mlp,lenet,batchnorm_lenet}.kiln ../tests/filetests/ok/*.kiln; do
    name=$(basename "$(dirname "$f")")_$(basename "$f" .kiln)
    "$kiln" emit ir "$f" > "corpus/ir_run/$name.ir" 2>/dev/null || rm -f "corpus/ir_run/$name.ir"
    "$kiln" emit step "$f" > "corpus/ir_run/$name.step.ir" 2>/dev/null || rm -f "corpus/ir_run/$name.step.ir"
done
python3 - <<'PY'
import json, struct
def npy(path, descr, shape, data):
    header = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (descr, repr(tuple(shape)))
    header += " " * (63 - (len(header) + 10) % 64) + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + data)
npy("corpus/readers/f32.npy", "<f4", (3, 4), struct.pack("<12f", *range(12)))
npy("corpus/readers/f64.npy", "<f8", (2,), struct.pack("<2d", 0.5, -1.5))
npy("corpus/readers/i64.npy", "<i8", (6,), struct.pack("<6q", *range(6)))
npy("corpus/readers/i32.npy", "<i4", (2, 2), struct.pack("<4i", 1, 2, 3, 4))
w = struct.pack("<6f", *([0.0] * 6))
head = json.dumps({"w": {"dtype": "F32", "shape": [3, 2], "data_offsets": [0, len(w)]}}).encode()
open("corpus/readers/checkpoint.safetensors", "wb").write(struct.pack("<Q", len(head)) + head + w)
PY
python3 - "$data" <<'PY'
import gzip, struct, sys
data = sys.argv[1]
labels = gzip.open(data + "/t10k-labels-idx1-ubyte.gz").read(108)
images = gzip.open(data + "/t10k-images-idx3-ubyte.gz").read(16 + 4 * 28 * 28)
open("corpus/readers/labels.idx", "wb").write(labels)
# Four images: the count in the header says so.
open("corpus/readers/images.idx", "wb").write(images[:4] + struct.pack(">I", 4) + images[8:])
PY
gzip -c corpus/readers/labels.idx > corpus/readers/labels.idx.gz
gzip -c corpus/readers/images.idx > corpus/readers/images.idx.gz
echo "corpus/ir_run: $(ls corpus/ir_run | wc -l) files, corpus/readers: $(ls corpus/readers | wc -l) files"
