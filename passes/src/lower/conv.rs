//! Convolutions: a padded copy of the input, then for one-group float
//! convolutions either im2col and a GEMM per batch element
//! (`ConvLowering::Im2col`) or im2row and one GEMM for the whole batch
//! (`ConvLowering::Im2row`: the weights are read once, not once per
//! example, and the GEMM is as tall as the batch's positions), chosen per
//! convolution by `ConvLowering::Auto`; otherwise one loop nest summing
//! each output's window.

use kiln_ir::kernel::{Affine, BufferId, BufferRole, KExpr, KStmt, MatrixRef, Size, VarId};
use kiln_ir::{ConvAttrs, DType, NodeId, ReduceKind};

use super::{ConvLowering, Lowering, load, row_major, strides, zero_of};

/// A convolution's buffers and shapes: its input (padded, once the padded
/// copy is made), weights and output.
struct Operands {
    x: BufferId,
    xs: Vec<Size>,
    w: BufferId,
    ws: Vec<Size>,
    out: BufferId,
    os: Vec<Size>,
    dtype: DType,
}

impl Lowering<'_> {
    /// A one-group float convolution of the padded input `xp` (shape `ps`)
    /// as im2col and a batched GEMM into `out`.
    fn im2col_conv(&mut self, attrs: &ConvAttrs, o: &Operands) -> Vec<KStmt> {
        let (xp, ps, w, ws, out, os, dtype) = (o.x, &o.xs[..], o.w, &o.ws[..], o.out, &o.os[..], o.dtype);
        let spatial = ps.len() - 2;
        let (batch, c_out, c_in) = (os[0].clone(), ws[0].clone(), ws[1].clone());
        let window: Size = ws[2..].iter().cloned().product();
        let positions: Size = os[2..].iter().cloned().product();
        let rows = c_in.clone() * window;
        let col = self.new_buffer(BufferRole::Temp, dtype, batch.clone() * rows.clone() * positions.clone());
        // col[n, ci, k..., y...] = xp[n, ci, y * stride + k * dilation]
        let n = self.vars(1)[0];
        let ci = self.vars(1)[0];
        let ks = self.vars(spatial);
        let ys = self.vars(spatial);
        let x_index = window_read(ps, attrs, n, ci, &ys, &ks);
        let mut vars = vec![n, ci];
        vars.extend(&ks);
        vars.extend(&ys);
        let mut extents = vec![batch.clone(), c_in];
        extents.extend(ws[2..].iter().cloned());
        extents.extend(os[2..].iter().cloned());
        let store = KStmt::Store { buffer: col, index: row_major(&vars, &strides(&extents)), value: load(xp, x_index) };
        let mut body = self.ask_for_lanes(Self::nest(&vars, &extents, vec![store]), dtype);
        body.extend(self.gemm(
            [batch, c_out.clone(), positions.clone(), rows.clone()],
            MatrixRef::row_major(w, 0, rows.clone(), 0),
            MatrixRef::row_major(col, 0, positions.clone(), rows * positions.clone()),
            MatrixRef::row_major(out, 0, positions.clone(), c_out * positions),
            dtype,
        ));
        body
    }

    /// A one-group float convolution of the padded input as im2row and one
    /// GEMM: `rows[n, y..., ci, k...] = xp[n, ci, y * stride + k * dilation]`,
    /// then `[n * positions, c_in * window]` times the weights transposed
    /// (`[c_in * window, c_out]`) gives `[n, positions, c_out]`, which is
    /// the output once its last two axes are swapped (no copy when there is
    /// one position).
    fn im2row_conv(&mut self, attrs: &ConvAttrs, o: &Operands) -> Vec<KStmt> {
        let (xp, ps, w, ws, out, os, dtype) = (o.x, &o.xs[..], o.w, &o.ws[..], o.out, &o.os[..], o.dtype);
        let spatial = ps.len() - 2;
        let (batch, c_out, c_in) = (os[0].clone(), ws[0].clone(), ws[1].clone());
        let window: Size = ws[2..].iter().cloned().product();
        let positions: Size = os[2..].iter().cloned().product();
        let rows = c_in.clone() * window;
        let tall = batch.clone() * positions.clone();
        let col = self.new_buffer(BufferRole::Temp, dtype, tall.clone() * rows.clone());
        let n = self.vars(1)[0];
        let ys = self.vars(spatial);
        let ci = self.vars(1)[0];
        let ks = self.vars(spatial);
        let x_index = window_read(ps, attrs, n, ci, &ys, &ks);
        let mut vars = vec![n];
        vars.extend(&ys);
        vars.push(ci);
        vars.extend(&ks);
        let mut extents = vec![batch.clone()];
        extents.extend(os[2..].iter().cloned());
        extents.push(c_in);
        extents.extend(ws[2..].iter().cloned());
        let store = KStmt::Store { buffer: col, index: row_major(&vars, &strides(&extents)), value: load(xp, x_index) };
        let mut body = self.ask_for_lanes(Self::nest(&vars, &extents, vec![store]), dtype);
        let one_position = positions.is(1);
        let product =
            if one_position { out } else { self.new_buffer(BufferRole::Temp, dtype, tall.clone() * c_out.clone()) };
        let weights_transposed = MatrixRef {
            buffer: w,
            offset: Size::from(0u64),
            row_stride: Size::from(1u64),
            batch_stride: Size::from(0u64),
            col_stride: rows.clone(),
        };
        body.extend(self.gemm(
            [Size::from(1u64), tall, c_out.clone(), rows.clone()],
            MatrixRef::row_major(col, 0, rows, 0),
            weights_transposed,
            MatrixRef::row_major(product, 0, c_out.clone(), 0),
            dtype,
        ));
        if !one_position {
            // out[n, co, p] = product[n, p, co]
            let [n, co, p] = [self.vars(1)[0], self.vars(1)[0], self.vars(1)[0]];
            let from = Affine::default()
                .plus_term(n, positions.clone() * c_out.clone())
                .plus_term(p, c_out.clone())
                .plus_term(co, Size::from(1u64));
            let extents = [batch, c_out, positions];
            let store = KStmt::Store {
                buffer: out,
                index: row_major(&[n, co, p], &strides(&extents)),
                value: load(product, from),
            };
            body.extend(self.ask_for_lanes(Self::nest(&[n, co, p], &extents, vec![store]), dtype));
        }
        body
    }

    /// The kernel of convolution node `id`: a padded copy of its input,
    /// then im2col and a GEMM, or the direct loop nest.
    pub(super) fn conv(&mut self, id: NodeId, attrs: &ConvAttrs) -> Vec<KStmt> {
        let node = self.f.graph.node(id);
        let (x_node, w_node) = (node.args[0], node.args[1]);
        let mut o = Operands {
            x: self.node_buffer[x_node.index()],
            xs: self.shapes[x_node.index()].clone(),
            w: self.node_buffer[w_node.index()],
            ws: self.shapes[w_node.index()].clone(),
            out: self.node_buffer[id.index()],
            os: self.shapes[id.index()].clone(),
            dtype: node.ty.dtype,
        };
        let spatial = o.xs.len() - 2;
        let mut padding = vec![(0, 0), (0, 0)];
        padding.extend(attrs.padding.iter().copied());
        let (xp, ps, mut body) = self.padded_copy(o.x, &o.xs, &padding, zero_of(o.dtype), o.dtype);
        (o.x, o.xs) = (xp, ps);
        let groups = attrs.groups;
        if groups == 1 && o.dtype.is_float() {
            let positions: Size = o.os[2..].iter().cloned().product();
            let choice = match self.options.conv {
                ConvLowering::Auto if self.at_hint(&positions) < 64 || self.at_hint(&o.ws[0]) >= 64 => {
                    ConvLowering::Im2row
                }
                ConvLowering::Auto => ConvLowering::Im2col,
                other => other,
            };
            match choice {
                ConvLowering::Im2col => {
                    body.extend(self.im2col_conv(attrs, &o));
                    return body;
                }
                ConvLowering::Im2row => {
                    body.extend(self.im2row_conv(attrs, &o));
                    return body;
                }
                ConvLowering::Direct | ConvLowering::Auto => {}
            }
        }
        let (ps, w, ws, out, os, dtype) = (&o.xs[..], o.w, &o.ws[..], o.out, &o.os[..], o.dtype);
        // With several groups the channel counts are constants (typing
        // checks them against the groups).
        let c_out_group = match ws[0].as_const() {
            Some(c) if groups > 1 => Size::from(c as u64 / groups),
            _ => ws[0].clone(),
        };
        let c_in_group = ws[1].clone();
        let n = self.vars(1)[0];
        let g = self.vars(1)[0];
        let co = self.vars(1)[0];
        let ys = self.vars(spatial);
        let ci = self.vars(1)[0];
        let ks = self.vars(spatial);
        let (x_strides, w_strides, o_strides) = (strides(ps), strides(ws), strides(os));
        let mut x_index = Affine::default()
            .plus_term(n, x_strides[0].clone())
            .plus_term(g, c_in_group.clone() * x_strides[1].clone())
            .plus_term(ci, x_strides[1].clone());
        let mut w_index = Affine::default()
            .plus_term(g, c_out_group.clone() * w_strides[0].clone())
            .plus_term(co, w_strides[0].clone())
            .plus_term(ci, w_strides[1].clone());
        let mut o_index = Affine::default()
            .plus_term(n, o_strides[0].clone())
            .plus_term(g, c_out_group.clone() * o_strides[1].clone())
            .plus_term(co, o_strides[1].clone());
        for d in 0..spatial {
            let s = x_strides[d + 2].clone();
            x_index = x_index
                .plus_term(ys[d], s.clone() * Size::from(attrs.stride[d]))
                .plus_term(ks[d], s * Size::from(attrs.dilation[d]));
            w_index = w_index.plus_term(ks[d], w_strides[d + 2].clone());
            o_index = o_index.plus_term(ys[d], o_strides[d + 2].clone());
        }
        let acc = self.acc();
        let product = KExpr::Binary(kiln_ir::BinaryOp::Mul, Box::new(load(xp, x_index)), Box::new(load(w, w_index)));
        let mut reduce_vars = vec![ci];
        reduce_vars.extend(&ks);
        let mut reduce_extents = vec![c_in_group];
        reduce_extents.extend(ws[2..].iter().cloned());
        let mut inner = vec![KStmt::AccInit { acc, dtype, kind: ReduceKind::Sum }];
        inner.extend(self.nest_serial(&reduce_vars, &reduce_extents, vec![KStmt::AccUpdate { acc, value: product }]));
        inner.push(KStmt::Store { buffer: out, index: o_index, value: KExpr::Acc(acc) });
        let mut outer_vars = vec![n, g, co];
        outer_vars.extend(&ys);
        let mut outer_extents = vec![os[0].clone(), Size::from(groups), c_out_group];
        outer_extents.extend(os[2..].iter().cloned());
        body.extend(Self::nest(&outer_vars, &outer_extents, inner));
        body
    }
}

/// Where output position `ys` of image `n` reads channel `ci` at window
/// offset `ks` in the padded input of shape `ps`:
/// `xp[n, ci, y * stride + k * dilation]`, as a flat index.
pub(super) fn window_read(ps: &[Size], attrs: &ConvAttrs, n: VarId, ci: VarId, ys: &[VarId], ks: &[VarId]) -> Affine {
    let x_strides = strides(ps);
    let mut index = Affine::default().plus_term(n, x_strides[0].clone()).plus_term(ci, x_strides[1].clone());
    for d in 0..ys.len() {
        let s = x_strides[d + 2].clone();
        index = index
            .plus_term(ys[d], s.clone() * Size::from(attrs.stride[d]))
            .plus_term(ks[d], s * Size::from(attrs.dilation[d]));
    }
    index
}
