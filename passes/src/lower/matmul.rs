//! Matrix products: GEMM calls (or loop nests, `GemmLowering::Loops`),
//! reading a permuted operand in place through strides where only products
//! read it, and integer products as loop nests.

use kiln_ir::kernel::{Affine, BufferId, KExpr, KStmt, MatrixRef, RuntimeCall, Size, VarId};
use kiln_ir::{DType, Function, Op, ReduceKind};

use super::{GemmLowering, Lowering, load, zero_of};

/// Whether `perm` swaps the last two axes and keeps the others.
pub(super) fn swaps_last_two(perm: &[usize]) -> bool {
    let r = perm.len();
    r >= 2 && perm[r - 2] == r - 1 && perm[r - 1] == r - 2 && perm[..r - 2].iter().enumerate().all(|(k, &p)| k == p)
}

/// For each node, whether it is a permute the matrix products reading it
/// can absorb (see `Lowering::transposed`).
pub(super) fn transposed_views(f: &Function) -> Vec<bool> {
    let mut only_matmuls = vec![true; f.graph.len()];
    for (_, node) in f.graph.nodes() {
        for &a in &node.args {
            if !matches!(node.op, Op::MatMul) || !node.ty.dtype.is_float() {
                only_matmuls[a.index()] = false;
            }
        }
    }
    for &o in &f.outputs {
        only_matmuls[o.index()] = false;
    }
    f.graph
        .nodes()
        .map(|(id, node)| matches!(&node.op, Op::Permute { perm } if swaps_last_two(perm)) && only_matmuls[id.index()])
        .collect()
}

/// For each node, whether it is a broadcast that only puts batch axes in
/// front of a matrix and that only matrix products read, as their right
/// operand, directly or through a transpose of its last two axes: a
/// weight shared by every batch (`[N, T, K] @ [K, M]`, and `g @ W^T` in its
/// gradient). The products read the matrix itself (batch stride 0), and
/// the broadcast is never written out.
pub(super) fn broadcast_views(f: &Function) -> Vec<bool> {
    // For each node, whether every reader is a float product reading it as
    // its right operand; an output is read by the caller.
    let mut right_of_products = vec![true; f.graph.len()];
    // For each node, whether every reader is such a product or a transpose
    // that only such products read.
    let mut readers: Vec<Vec<(usize, usize)>> = vec![Vec::new(); f.graph.len()];
    for (id, node) in f.graph.nodes() {
        for (k, &a) in node.args.iter().enumerate() {
            readers[a.index()].push((id.index(), k));
            if !(matches!(node.op, Op::MatMul) && k == 1 && node.ty.dtype.is_float()) {
                right_of_products[a.index()] = false;
            }
        }
    }
    for &o in &f.outputs {
        right_of_products[o.index()] = false;
    }
    let nodes: Vec<&kiln_ir::Node> = f.graph.nodes().map(|(_, n)| n).collect();
    let transposed_right =
        |p: usize| matches!(&nodes[p].op, Op::Permute { perm } if swaps_last_two(perm)) && right_of_products[p];
    let mut outputs = vec![false; f.graph.len()];
    for &o in &f.outputs {
        outputs[o.index()] = true;
    }
    f.graph
        .nodes()
        .map(|(id, node)| {
            let Op::Broadcast { .. } = node.op else { return false };
            let source = f.graph.ty(node.args[0]);
            let r = node.ty.rank();
            !outputs[id.index()]
                && readers[id.index()].iter().all(|&(c, k)| {
                    (matches!(nodes[c].op, Op::MatMul) && k == 1 && nodes[c].ty.dtype.is_float()) || transposed_right(c)
                })
                && source.rank() == 2
                && r > 2
                && node.ty.shape.0[r - 2..] == source.shape.0[..]
                && !matches!(f.graph.node(node.args[0]).op, Op::Permute { .. })
        })
        .collect()
}

impl Lowering<'_> {
    /// `out = a @ b`; `transposed[k]` says operand `k`'s buffer holds it
    /// transposed (the source of an absorbed permute); `shared_b` that `b`'s
    /// buffer holds one matrix for every batch (an absorbed broadcast).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn matmul(
        &mut self,
        a: BufferId,
        b: BufferId,
        transposed: [bool; 2],
        shared_b: bool,
        a_shape: &[Size],
        out_shape: &[Size],
        out: BufferId,
        dtype: DType,
    ) -> Vec<KStmt> {
        let r = out_shape.len();
        let (m, n, k) = (out_shape[r - 2].clone(), out_shape[r - 1].clone(), a_shape[r - 1].clone());
        let batch: Size = out_shape[..r - 2].iter().cloned().product();
        if dtype.is_float() {
            let matrix = |buffer, rows: &Size, cols: &Size, transposed: bool| {
                let m = MatrixRef::row_major(buffer, 0, cols.clone(), rows.clone() * cols.clone());
                if transposed { MatrixRef { row_stride: 1.into(), col_stride: rows.clone(), ..m } } else { m }
            };
            if shared_b && !transposed[0] {
                // One product: the batches of `a` and `out` are consecutive
                // rows of one matrix each.
                let rows = batch * m;
                let (a, b, c) =
                    (matrix(a, &rows, &k, false), matrix(b, &k, &n, transposed[1]), matrix(out, &rows, &n, false));
                return self.gemm([Size::constant(1), rows, n, k], a, b, c, dtype);
            }
            let (a, mut b, c) =
                (matrix(a, &m, &k, transposed[0]), matrix(b, &k, &n, transposed[1]), matrix(out, &m, &n, false));
            if shared_b {
                b.batch_stride = Size::constant(0);
            }
            return self.gemm([batch, m, n, k], a, b, c, dtype);
        }
        let [j, i, col, l] = [self.vars(1)[0], self.vars(1)[0], self.vars(1)[0], self.vars(1)[0]];
        let acc = self.acc();
        let a_index = Affine::default().plus_term(j, m.clone() * k.clone()).plus_term(i, k.clone()).plus_term(l, 1);
        let b_index = Affine::default().plus_term(j, k.clone() * n.clone()).plus_term(l, n.clone()).plus_term(col, 1);
        let product = KExpr::Binary(kiln_ir::BinaryOp::Mul, Box::new(load(a, a_index)), Box::new(load(b, b_index)));
        let mut body = vec![KStmt::AccInit { acc, dtype, kind: ReduceKind::Sum }];
        body.extend(self.nest_serial(&[l], &[k], vec![KStmt::AccUpdate { acc, value: product }]));
        let c_index = Affine::default().plus_term(j, m.clone() * n.clone()).plus_term(i, n.clone()).plus_term(col, 1);
        body.push(KStmt::Store { buffer: out, index: c_index, value: KExpr::Acc(acc) });
        Self::nest(&[j, i, col], &[batch, m, n], body)
    }

    /// `c = a @ b` for `batch` float matrices (`sizes` = batch, m, n, k), as
    /// the options ask: a runtime call or loop nests.
    pub(super) fn gemm(
        &mut self,
        sizes: [Size; 4],
        a: MatrixRef,
        b: MatrixRef,
        c: MatrixRef,
        dtype: DType,
    ) -> Vec<KStmt> {
        let [batch, m, n, k] = sizes;
        if self.options.gemm == GemmLowering::Call {
            return vec![KStmt::Call(RuntimeCall::Gemm { batch, m, n, k, a, b, c })];
        }
        let [j, i, l, col] = [self.vars(1)[0], self.vars(1)[0], self.vars(1)[0], self.vars(1)[0]];
        let at = |mat: &MatrixRef, row: VarId, column: VarId| {
            Affine::constant(mat.offset.clone())
                .plus_term(j, mat.batch_stride.clone())
                .plus_term(row, mat.row_stride.clone())
                .plus_term(column, mat.col_stride.clone())
        };
        let vector = if dtype == DType::F32 && self.at_hint(&n) >= 4 { 4 } else { 1 };
        let row = |value: KExpr| KStmt::For {
            var: col,
            extent: n.clone(),
            parallel: false,
            vector,
            body: vec![KStmt::Store { buffer: c.buffer, index: at(&c, i, col), value }],
        };
        let zero = row(zero_of(dtype));
        let product = KExpr::Binary(
            kiln_ir::BinaryOp::Mul,
            Box::new(load(a.buffer, at(&a, i, l))),
            Box::new(load(b.buffer, at(&b, l, col))),
        );
        let update =
            row(KExpr::Binary(kiln_ir::BinaryOp::Add, Box::new(load(c.buffer, at(&c, i, col))), Box::new(product)));
        let depth = KStmt::For { var: l, extent: k.clone(), parallel: false, vector: 1, body: vec![update] };
        Self::nest(&[j, i], &[batch, m], vec![zero, depth])
    }
}
