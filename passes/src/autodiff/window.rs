//! Vector-Jacobian rules of the windowed ops, convolution, transposed
//! convolution and pooling, built from primitives (conv, conv_transpose,
//! reduce_window, pad, slice, reshape, broadcast, gather).
//!
//! Along one spatial axis with input size `X`, window `K`, stride `s`,
//! dilation `d` and padding `(lo, hi)`, output position `o` reads input
//! `o*s + k*d - lo`. The gradient with respect to the input is therefore
//! the transposed convolution of `g` (one group), or (several groups) a
//! correlation of `g` dilated by `s` (zeros between its elements), padded
//! by `(K-1)*d - lo` before and cropped or padded to give `X` outputs, with
//! the window reversed; the gradient with respect to a convolution's weight
//! is a correlation of the input with `g`, batch and channels swapped.

use kiln_ir::{CompareOp, ConvAttrs, DType, Dim, NodeId, Op, ReduceKind, Shape};

use super::builder::{Builder, Result};

/// One spatial axis of a windowed op: input size, window, stride,
/// dilation and leading padding.
struct Axis {
    size: u64,
    window: u64,
    stride: u64,
    dilation: u64,
    lo: u64,
}

/// `g` dilated by the stride and padded so that a stride-1 correlation with
/// the (dilated) window gives `size` outputs on `axis`.
fn spread(b: &mut Builder<'_>, g: NodeId, axis: usize, a: Axis) -> Result<NodeId> {
    let outputs = b.const_dim(g, axis)?;
    let dilated = b.dilate(g, axis, a.stride)?;
    // Keep (outputs - 1) * stride + 1 elements: drop the trailing zeros.
    let kept = if outputs == 0 { 0 } else { (outputs - 1) * a.stride + 1 };
    let trimmed = b.slice(dilated, axis, 0, kept, 1)?;
    let before = ((a.window - 1) * a.dilation) as i64 - a.lo as i64;
    let after = a.size as i64 + a.lo as i64 - kept as i64;
    b.pad_or_crop(trimmed, axis, before, after)
}

/// Gradients of `conv(x, w)` with respect to `x` and `w`.
pub fn conv(
    b: &mut Builder<'_>,
    attrs: &ConvAttrs,
    x: NodeId,
    w: NodeId,
    g: NodeId,
    needs: &[bool],
) -> Result<Vec<Option<NodeId>>> {
    let gx = if needs[0] { Some(conv_input(b, attrs, x, w, g)?) } else { None };
    let gw = if needs[1] { Some(conv_weight(b, attrs, x, w, g)?) } else { None };
    Ok(vec![gx, gw])
}

/// With one group, the transposed convolution of `g` (which lowers to a
/// GEMM and col2im, with neither `g` padded nor the weights flipped);
/// with several, a stride-1 convolution of `g` spread out by the stride
/// and padded, with the weights flipped and each group's transposed.
fn conv_input(b: &mut Builder<'_>, attrs: &ConvAttrs, x: NodeId, w: NodeId, g: NodeId) -> Result<NodeId> {
    let (xt, wt) = (b.ty(x), b.ty(w));
    let spatial = xt.rank() - 2;
    if attrs.groups == 1 {
        let size = (0..spatial).map(|i| b.const_dim(x, i + 2)).collect::<Result<Vec<u64>>>()?;
        return b.add(Op::ConvTranspose { conv: attrs.clone(), size }, &[g, w]);
    }
    let mut spread_g = g;
    let mut flipped = w;
    for i in 0..spatial {
        let axis = i + 2;
        let (size, k) = (b.const_dim(x, axis)?, b.const_dim(w, axis)?);
        spread_g = spread(
            b,
            spread_g,
            axis,
            Axis { size, window: k, stride: attrs.stride[i], dilation: attrs.dilation[i], lo: attrs.padding[i].0 },
        )?;
        flipped = b.reverse(flipped, axis)?;
    }
    // [c_out, c_in/G, k..] -> [G, c_out/G, c_in/G, k..] -> [G, c_in/G, c_out/G, k..] -> [c_in, c_out/G, k..]
    let groups = attrs.groups;
    let kernel: Vec<Dim> = wt.shape.0[2..].to_vec();
    let transposed = if groups == 1 {
        let mut perm: Vec<usize> = (0..wt.rank()).collect();
        perm.swap(0, 1);
        b.permute(flipped, perm)?
    } else {
        let c_out = b.const_dim(w, 0)?;
        let c_in_group = b.const_dim(w, 1)?;
        let split = Shape(
            [Dim::Const(groups), Dim::Const(c_out / groups), Dim::Const(c_in_group)]
                .into_iter()
                .chain(kernel.clone())
                .collect(),
        );
        let r = b.reshape(flipped, split)?;
        let perm: Vec<usize> = [0, 2, 1].into_iter().chain(3..wt.rank() + 1).collect();
        let p = b.permute(r, perm)?;
        let merged =
            Shape([Dim::Const(c_in_group * groups), Dim::Const(c_out / groups)].into_iter().chain(kernel).collect());
        b.reshape(p, merged)?
    };
    let unit = ConvAttrs {
        stride: vec![1; spatial],
        padding: vec![(0, 0); spatial],
        dilation: attrs.dilation.clone(),
        groups,
    };
    b.add(Op::Conv(unit), &[spread_g, transposed])
}

/// Gradients of `y = conv_transpose(g, w)`, the derivative of
/// `<conv(x, w), g>` with respect to `x`, which is linear in `g` and in
/// `w`: with respect to `g`, the convolution of `h` (`y`'s gradient) with
/// `w`; with respect to `w`, the weight gradient of that convolution.
pub fn conv_transpose(
    b: &mut Builder<'_>,
    attrs: &ConvAttrs,
    g: NodeId,
    w: NodeId,
    h: NodeId,
    needs: &[bool],
) -> Result<Vec<Option<NodeId>>> {
    let gg = if needs[0] { Some(b.add(Op::Conv(attrs.clone()), &[h, w])?) } else { None };
    let gw = if needs[1] { Some(conv_weight_one_group(b, attrs, h, w, g)?) } else { None };
    Ok(vec![gg, gw])
}

fn conv_weight(b: &mut Builder<'_>, attrs: &ConvAttrs, x: NodeId, w: NodeId, g: NodeId) -> Result<NodeId> {
    let groups = attrs.groups;
    if groups == 1 {
        return conv_weight_one_group(b, attrs, x, w, g);
    }
    let (c_in, c_out) = (b.const_dim(x, 1)?, b.const_dim(w, 0)?);
    let (in_group, out_group) = (c_in / groups, c_out / groups);
    let mut parts = Vec::new();
    for k in 0..groups {
        let xk = b.slice(x, 1, k * in_group, (k + 1) * in_group, 1)?;
        let gk = b.slice(g, 1, k * out_group, (k + 1) * out_group, 1)?;
        let wk = b.slice(w, 0, k * out_group, (k + 1) * out_group, 1)?;
        parts.push(conv_weight_one_group(b, &ConvAttrs { groups: 1, ..attrs.clone() }, xk, wk, gk)?);
    }
    b.add(Op::Concat { axis: 0 }, &parts)
}

/// `gw[co, ci, k] = sum over n, o of g[n, co, o] * x[n, ci, o*s + k*d - lo]`:
/// a correlation of x (as `[c_in, n, X]`) with g (as `[c_out, n, Y]`) whose
/// stride is the dilation and whose dilation is the stride.
fn conv_weight_one_group(b: &mut Builder<'_>, attrs: &ConvAttrs, x: NodeId, w: NodeId, g: NodeId) -> Result<NodeId> {
    let rank = b.ty(x).rank();
    let spatial = rank - 2;
    let mut swap: Vec<usize> = (0..rank).collect();
    swap.swap(0, 1);
    let xs = b.permute(x, swap.clone())?;
    let gs = b.permute(g, swap.clone())?;
    let mut padding = Vec::with_capacity(spatial);
    for i in 0..spatial {
        let axis = i + 2;
        let (size, k, outputs) = (b.const_dim(x, axis)?, b.const_dim(w, axis)?, b.const_dim(g, axis)?);
        let (lo, s, d) = (attrs.padding[i].0, attrs.stride[i], attrs.dilation[i]);
        // The last input index read is (k-1)*d + (outputs-1)*s - lo.
        let last = ((k - 1) * d + outputs.saturating_sub(1) * s) as i64 - lo as i64;
        padding.push((lo, (last - (size as i64 - 1)).max(0) as u64));
    }
    let swapped = ConvAttrs { stride: attrs.dilation.clone(), padding, dilation: attrs.stride.clone(), groups: 1 };
    let mut r = b.add(Op::Conv(swapped), &[xs, gs])?;
    for i in 0..spatial {
        let k = b.const_dim(w, i + 2)?;
        r = b.slice(r, i + 2, 0, k, 1)?;
    }
    b.permute(r, swap)
}

/// The gradient of a pooling window op with respect to its input.
#[allow(clippy::too_many_arguments)]
pub fn reduce_window(
    b: &mut Builder<'_>,
    kind: ReduceKind,
    window: &[u64],
    stride: &[u64],
    padding: &[(u64, u64)],
    x: NodeId,
    y: NodeId,
    g: NodeId,
) -> Result<NodeId> {
    match kind {
        ReduceKind::Sum if disjoint(window, stride, padding) => {
            // Each input element lies in one window at most: it receives
            // that window's g (each g repeated over its window), and the
            // elements after the last window receive 0.
            let mut repeated = g;
            for axis in 0..window.len() {
                if untouched(window, stride, padding, axis) {
                    continue;
                }
                repeated = b.repeat(repeated, axis, stride[axis])?;
                let (size, length) = (b.const_dim(x, axis)? as i64, b.const_dim(repeated, axis)? as i64);
                repeated = b.pad_or_crop(repeated, axis, 0, size - length)?;
            }
            Ok(repeated)
        }
        ReduceKind::Sum => {
            // Each input element receives the sum of g over the windows that cover it.
            let mut spread_g = g;
            for axis in 0..window.len() {
                if untouched(window, stride, padding, axis) {
                    continue;
                }
                let size = b.const_dim(x, axis)?;
                spread_g = spread(
                    b,
                    spread_g,
                    axis,
                    Axis { size, window: window[axis], stride: stride[axis], dilation: 1, lo: padding[axis].0 },
                )?;
            }
            let rank = window.len();
            b.add(
                Op::ReduceWindow {
                    kind: ReduceKind::Sum,
                    window: window.to_vec(),
                    stride: vec![1; rank],
                    padding: vec![(0, 0); rank],
                },
                &[spread_g],
            )
        }
        ReduceKind::Max if disjoint(window, stride, padding) => max_pool_disjoint(b, window, stride, x, y, g),
        ReduceKind::Max => max_pool(b, window, stride, padding, x, y, g),
    }
}

/// [`max_pool`] where no two windows share an element: each window's
/// maximum and gradient repeated over the window, compared with the input
/// in one elementwise pass, the hits counted by a pooling sum; elements
/// after the last window receive 0.
fn max_pool_disjoint(
    b: &mut Builder<'_>,
    window: &[u64],
    stride: &[u64],
    x: NodeId,
    y: NodeId,
    g: NodeId,
) -> Result<NodeId> {
    let rank = window.len();
    let touched: Vec<usize> = (0..rank).filter(|&a| !untouched(window, stride, &vec![(0, 0); rank], a)).collect();
    // The part of x the windows cover, and y and g repeated over it.
    let (mut covered, mut maxima) = (x, y);
    for &axis in &touched {
        let length = b.const_dim(y, axis)? * stride[axis];
        covered = b.slice(covered, axis, 0, length, 1)?;
        maxima = b.repeat(maxima, axis, stride[axis])?;
    }
    let hit = b.compare(CompareOp::Eq, covered, maxima)?;
    let hit = b.cast(hit, b.ty(x).dtype)?;
    let count = b.add(
        Op::ReduceWindow {
            kind: ReduceKind::Sum,
            window: window.to_vec(),
            stride: stride.to_vec(),
            padding: vec![(0, 0); rank],
        },
        &[hit],
    )?;
    let mut share = b.div(g, count)?;
    for &axis in &touched {
        share = b.repeat(share, axis, stride[axis])?;
    }
    let mut gradient = b.mul(share, hit)?;
    for &axis in &touched {
        let (size, length) = (b.const_dim(x, axis)? as i64, b.const_dim(gradient, axis)? as i64);
        gradient = b.pad_or_crop(gradient, axis, 0, size - length)?;
    }
    Ok(gradient)
}

/// For each window offset, the elements that equal their window's maximum
/// share that window's gradient evenly; contributions go back to the
/// positions they were read from.
fn max_pool(
    b: &mut Builder<'_>,
    window: &[u64],
    stride: &[u64],
    padding: &[(u64, u64)],
    x: NodeId,
    y: NodeId,
    g: NodeId,
) -> Result<NodeId> {
    let xt = b.ty(x);
    let rank = xt.rank();
    // The input padded with -inf, so that padding never equals a maximum.
    let padded = if padding.iter().all(|&p| p == (0, 0)) {
        x
    } else {
        let inside = b.add(
            Op::Constant { value: kiln_ir::Literal::Bool(true), dtype: DType::Bool, shape: xt.shape.clone() },
            &[],
        )?;
        let inside = b.add(Op::Pad { padding: padding.to_vec() }, &[inside])?;
        let values = b.add(Op::Pad { padding: padding.to_vec() }, &[x])?;
        let minus_inf = b.splat_of(f64::NEG_INFINITY, values)?;
        b.select(inside, values, minus_inf)?
    };
    let offsets = window_offsets(window);
    let yt = b.ty(y);
    let mut reads = Vec::new();
    for offset in &offsets {
        let mut r = padded;
        for axis in 0..rank {
            let count = yt.shape.0[axis].as_const();
            if untouched(window, stride, padding, axis) {
                continue;
            }
            let count = count.ok_or_else(|| super::AutodiffError::Internal("pooled axes are constant".into()))?;
            let stop = offset[axis] + stride[axis] * count.saturating_sub(1) + 1;
            r = b.slice(r, axis, offset[axis], if count == 0 { offset[axis] } else { stop }, stride[axis])?;
        }
        let hit = b.compare(CompareOp::Eq, r, y)?;
        reads.push(b.cast(hit, xt.dtype)?);
    }
    let mut count = reads[0];
    for &r in &reads[1..] {
        count = b.add_n(count, r)?;
    }
    let share = b.div(g, count)?;
    let mut total: Option<NodeId> = None;
    for (offset, hit) in offsets.iter().zip(&reads) {
        let mut c = b.mul(share, *hit)?;
        for axis in 0..rank {
            if untouched(window, stride, padding, axis) {
                continue;
            }
            let size = b.const_dim(x, axis)? as i64;
            let dilated = b.dilate(c, axis, stride[axis])?;
            let length = b.const_dim(dilated, axis)? as i64;
            let before = offset[axis] as i64 - padding[axis].0 as i64;
            c = b.pad_or_crop(dilated, axis, before, size - before - length)?;
        }
        total = Some(match total {
            None => c,
            Some(t) => b.add_n(t, c)?,
        });
    }
    total.ok_or_else(|| super::AutodiffError::Internal("a window has at least one element".into()))
}

/// Whether no two windows share an element: on every axis the window is
/// as long as the stride, with no padding (LeNet's 2x2 pooling).
fn disjoint(window: &[u64], stride: &[u64], padding: &[(u64, u64)]) -> bool {
    (0..window.len()).all(|axis| window[axis] == stride[axis] && padding[axis] == (0, 0))
}

/// Whether a pooling window leaves `axis` alone (window 1, stride 1, no
/// padding): its gradient passes through that axis unchanged.
fn untouched(window: &[u64], stride: &[u64], padding: &[(u64, u64)], axis: usize) -> bool {
    (window[axis], stride[axis], padding[axis]) == (1, 1, (0, 0))
}

/// Every position inside a window, in row-major order.
fn window_offsets(window: &[u64]) -> Vec<Vec<u64>> {
    let mut offsets = vec![Vec::new()];
    for &w in window {
        offsets =
            offsets.into_iter().flat_map(|prefix| (0..w).map(move |k| [prefix.clone(), vec![k]].concat())).collect();
    }
    offsets
}
