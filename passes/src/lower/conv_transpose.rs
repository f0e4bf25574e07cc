//! Transposed convolutions, the gradient of a one-group convolution's
//! input. Each example's result is built in a zeroed buffer padded like
//! the convolution's input: by default every window's contribution is
//! computed by one GEMM for the batch, `g`'s rows `[n * positions, c_out]`
//! (`g` copied transposed; as it is with one position) times the weights
//! `[c_out, c_in * window]`, and col2im adds each contribution in at the
//! position im2row would have read it from; `ConvLowering::Direct` adds
//! each product `g * w` in place instead. The padding is then cropped.
//!
//! Guarantee: the output equals the sum over every `co`, `o` and `k` of
//! `g[n, co, o] * w[co, ci, k]` at position `o * stride + k * dilation -
//! lo`, positions in the padding dropped. Windows overlap, so an example's
//! additions run on one thread, in order (one `parallel` loop over the
//! examples whose body is two nests, which no backend splits further).
//! Their innermost loops may take four lanes: a vector's lanes add into
//! four different positions.

use kiln_ir::kernel::{Affine, BufferId, BufferRole, KExpr, KStmt, MatrixRef, Size, VarId};
use kiln_ir::{BinaryOp, ConvAttrs, DType, NodeId};

use super::conv::window_read;
use super::{ConvLowering, Lowering, load, numel, row_major, strides, zero_of};

impl Lowering<'_> {
    /// The kernel of transposed convolution node `id` (`g`, `w`).
    pub(super) fn conv_transpose(&mut self, id: NodeId, attrs: &ConvAttrs) -> Vec<KStmt> {
        let node = self.f.graph.node(id);
        let (g_node, w_node, dtype) = (node.args[0], node.args[1], node.ty.dtype);
        let (g, gs) = (self.node_buffer[g_node.index()], self.shapes[g_node.index()].clone());
        let (w, ws) = (self.node_buffer[w_node.index()], self.shapes[w_node.index()].clone());
        let (out, os) = (self.node_buffer[id.index()], self.shapes[id.index()].clone());
        let spatial = os.len() - 2;
        // The padded extent of each spatial axis: every position a window
        // reaches, and the input's own after its leading padding. Typing
        // made the spatial sizes constants.
        let constant = |s: &Size| s.as_const().unwrap_or(0).max(0) as u64;
        let mut ps = vec![os[0].clone(), os[1].clone()];
        for d in 0..spatial {
            let (o, k, x) = (constant(&gs[d + 2]), constant(&ws[d + 2]), constant(&os[d + 2]));
            let reach = (o.saturating_sub(1) * attrs.stride[d] + (k.saturating_sub(1)) * attrs.dilation[d] + 1)
                * u64::from(o > 0 && k > 0);
            ps.push(Size::from(reach.max(attrs.padding[d].0 + x)));
        }
        let xp = self.new_buffer(BufferRole::Temp, dtype, numel(&ps));
        let mut body = Vec::new();
        let n = self.vars(1)[0];
        let example = self.zeroed_example(xp, &ps, n, dtype);
        let additions = if self.options.conv == ConvLowering::Direct {
            self.add_products(attrs, n, [g, w, xp], [&gs, &ws, &ps])
        } else {
            let (cols, mut before) = self.window_contributions(g, &gs, w, &ws, dtype);
            body.append(&mut before);
            self.col2im(attrs, n, cols, &gs, &ws, xp, &ps)
        };
        body.push(KStmt::For {
            var: n,
            extent: os[0].clone(),
            parallel: true,
            vector: 1,
            body: vec![example, additions],
        });
        // out[n, ci, i..] = xp[n, ci, i + lo..]
        let p_strides = strides(&ps);
        let lo =
            (0..spatial).fold(Size::from(0u64), |at, d| at + Size::from(attrs.padding[d].0) * p_strides[d + 2].clone());
        body.extend(self.elementwise(out, &os, |v| load(xp, row_major(v, &p_strides).plus(lo))));
        body
    }

    /// `xp[n, ..] = 0` for one example `n` (bound outside).
    fn zeroed_example(&mut self, xp: BufferId, ps: &[Size], n: VarId, dtype: DType) -> KStmt {
        let vars = self.vars(ps.len() - 1);
        let p_strides = strides(ps);
        let index = row_major(&vars, &p_strides[1..]).plus_term(n, p_strides[0].clone());
        let store = KStmt::Store { buffer: xp, index, value: zero_of(dtype) };
        let nest = self.ask_for_lanes(self.nest_serial(&vars, &ps[1..], vec![store]), dtype);
        nest.into_iter().next().expect("a spatial convolution has axes")
    }

    /// `xp[n, ci, o * stride + k * dilation] += g[n, co, o] * w[co, ci, k]`
    /// for one example `n`, over `co, o.., ci, k..` in order.
    fn add_products(
        &mut self,
        attrs: &ConvAttrs,
        n: VarId,
        [g, w, xp]: [BufferId; 3],
        [gs, ws, ps]: [&[Size]; 3],
    ) -> KStmt {
        let spatial = ps.len() - 2;
        let co = self.vars(1)[0];
        let ys = self.vars(spatial);
        let ci = self.vars(1)[0];
        let ks = self.vars(spatial);
        let at = window_read(ps, attrs, n, ci, &ys, &ks);
        let mut g_vars = vec![n, co];
        g_vars.extend(&ys);
        let mut w_vars = vec![co, ci];
        w_vars.extend(&ks);
        let product = KExpr::Binary(
            BinaryOp::Mul,
            Box::new(load(g, row_major(&g_vars, &strides(gs)))),
            Box::new(load(w, row_major(&w_vars, &strides(ws)))),
        );
        let (vars, extents) = window_loops((co, ws[0].clone()), &ys, ci, &ks, gs, ws);
        self.added_in_place(xp, at, product, &vars, &extents)
    }

    /// `xp[at] = xp[at] + value` in a serial nest over `vars`.
    fn added_in_place(&self, xp: BufferId, at: Affine, value: KExpr, vars: &[VarId], extents: &[Size]) -> KStmt {
        let sum = KExpr::Binary(BinaryOp::Add, Box::new(load(xp, at.clone())), Box::new(value));
        let store = KStmt::Store { buffer: xp, index: at, value: sum };
        let dtype = self.buffers[xp.0 as usize].dtype;
        let nest = self.ask_for_lanes(self.nest_serial(vars, extents, vec![store]), dtype);
        nest.into_iter().next().expect("a window has loops")
    }

    /// Every window's contribution for the whole batch,
    /// `cols[n, o.., ci, k..] = sum over co of g[n, co, o..] * w[co, ci, k..]`:
    /// one GEMM of `g`'s rows (copied transposed unless there is one
    /// position) and the weights. Returns `cols` and the statements.
    fn window_contributions(
        &mut self,
        g: BufferId,
        gs: &[Size],
        w: BufferId,
        ws: &[Size],
        dtype: DType,
    ) -> (BufferId, Vec<KStmt>) {
        let (batch, c_out, c_in) = (gs[0].clone(), ws[0].clone(), ws[1].clone());
        let positions: Size = gs[2..].iter().cloned().product();
        let window: Size = ws[2..].iter().cloned().product();
        let tall = batch.clone() * positions.clone();
        let mut body = Vec::new();
        let rows = if positions.is(1) {
            g
        } else {
            // rows[n, p, co] = g[n, co, p]
            let rows = self.new_buffer(BufferRole::Temp, dtype, tall.clone() * c_out.clone());
            let [n, p, co] = [self.vars(1)[0], self.vars(1)[0], self.vars(1)[0]];
            let from = Affine::default()
                .plus_term(n, positions.clone() * c_out.clone())
                .plus_term(co, positions.clone())
                .plus_term(p, Size::from(1u64));
            let extents = [batch, positions, c_out.clone()];
            let store =
                KStmt::Store { buffer: rows, index: row_major(&[n, p, co], &strides(&extents)), value: load(g, from) };
            body.extend(self.ask_for_lanes(Self::nest(&[n, p, co], &extents, vec![store]), dtype));
            rows
        };
        let width = c_in * window;
        let cols = self.new_buffer(BufferRole::Temp, dtype, tall.clone() * width.clone());
        body.extend(self.gemm(
            [Size::from(1u64), tall, width.clone(), c_out.clone()],
            MatrixRef::row_major(rows, 0, c_out, 0),
            MatrixRef::row_major(w, 0, width.clone(), 0),
            MatrixRef::row_major(cols, 0, width, 0),
            dtype,
        ));
        (cols, body)
    }

    /// col2im for one example `n`: `xp[n, ci, o * stride + k * dilation] +=
    /// cols[n, o.., ci, k..]`, over `o.., ci, k..` in order (where im2row
    /// reads, and in its order).
    #[allow(clippy::too_many_arguments)]
    fn col2im(
        &mut self,
        attrs: &ConvAttrs,
        n: VarId,
        cols: BufferId,
        gs: &[Size],
        ws: &[Size],
        xp: BufferId,
        ps: &[Size],
    ) -> KStmt {
        let spatial = ps.len() - 2;
        let ys = self.vars(spatial);
        let ci = self.vars(1)[0];
        let ks = self.vars(spatial);
        let at = window_read(ps, attrs, n, ci, &ys, &ks);
        let (vars, extents) = window_loops((n, gs[0].clone()), &ys, ci, &ks, gs, ws);
        let from = row_major(&vars, &strides(&extents));
        self.added_in_place(xp, at, load(cols, from), &vars[1..], &extents[1..])
    }
}

/// The loops over `first`, then a window's positions `ys` (as many as
/// `g`'s spatial axes), input channel `ci` and offsets `ks`, and their
/// extents.
fn window_loops(
    first: (VarId, Size),
    ys: &[VarId],
    ci: VarId,
    ks: &[VarId],
    gs: &[Size],
    ws: &[Size],
) -> (Vec<VarId>, Vec<Size>) {
    let vars = [&[first.0][..], ys, &[ci], ks].concat();
    let extents = [&[first.1][..], &gs[2..], &ws[1..2], &ws[2..]].concat();
    (vars, extents)
}
