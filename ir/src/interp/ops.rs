//! The interpreter's meaning of each op, one plain function per kind of op.
//! Operands have already been type-checked by the verifier; what can still
//! go wrong at run time (an index out of range, integer division by zero) is
//! returned as an error message.

use ndarray::{Array2, ArrayD, ArrayView2, Axis, Dimension, IxDyn, Slice};

use super::tensor::{Data, Tensor};
use crate::op::{BinaryOp, CompareOp, ConvAttrs, Literal, Op, ReduceKind, UnaryOp};
use crate::random;
use crate::scalar;
use crate::types::{Bindings, DType};

type Result<T> = std::result::Result<T, String>;

/// Applies `op` to `args`; `shape` is the node's concrete output shape.
pub(super) fn apply(op: &Op, args: &[&Tensor], shape: &[usize], bindings: &Bindings) -> Result<Tensor> {
    let dim = IxDyn(shape);
    match op {
        Op::Input { .. } | Op::Param { .. } => Err("inputs and parameters are bound by the caller".into()),
        Op::Constant { value, dtype, .. } => Ok(match *value {
            Literal::Float(x) => Tensor::float(*dtype, ArrayD::from_elem(dim, x.get())),
            Literal::Int(i) => Tensor::int(*dtype, ArrayD::from_elem(dim, i)),
            Literal::Bool(b) => Tensor::bool(ArrayD::from_elem(dim, b)),
        }),
        Op::DimValue { symbol } => {
            let value = bindings.get(symbol).ok_or_else(|| format!("symbol {symbol} is unbound"))?;
            Ok(Tensor::int(DType::I64, ArrayD::from_elem(IxDyn(&[]), *value as i64)))
        }
        Op::Iota { axis, dtype, .. } => {
            let ints = ArrayD::from_shape_fn(dim, |i| i[*axis] as i64);
            Ok(if dtype.is_float() {
                Tensor::float(*dtype, ints.mapv(|x| x as f64))
            } else {
                Tensor::int(*dtype, ints)
            })
        }
        Op::RandomBits { stream, dtype, .. } => {
            let key = int_array(args[0])?.iter().next().copied().unwrap_or(0) as u64;
            let mut bits = ArrayD::zeros(dim);
            for (counter, x) in bits.iter_mut().enumerate() {
                *x = if *dtype == DType::I32 {
                    i64::from(random::bits31(key, *stream, counter as u64))
                } else {
                    (random::bits(key, *stream, counter as u64) >> 1) as i64
                };
            }
            Ok(Tensor::int(*dtype, bits))
        }
        Op::Unary(u) => unary(*u, args[0]),
        Op::Binary(b) => binary(*b, args[0], args[1]),
        Op::Compare(c) => compare(*c, args[0], args[1]),
        Op::Select => {
            let cond = bool_array(args[0])?;
            let data = match (&args[1].data, &args[2].data) {
                (Data::Float(a), Data::Float(b)) => Data::Float(select(cond, a, b)),
                (Data::Int(a), Data::Int(b)) => Data::Int(select(cond, a, b)),
                (Data::Bool(a), Data::Bool(b)) => Data::Bool(select(cond, a, b)),
                _ => return Err("select: the two values have different dtypes".into()),
            };
            Ok(Tensor { dtype: args[1].dtype, data })
        }
        Op::Cast { to } => Ok(cast(args[0], *to)),
        Op::StopGradient => Ok(args[0].clone()),
        Op::Reduce { kind, axes, keepdims } => reduce(*kind, args[0], axes, *keepdims),
        Op::Reshape { .. }
        | Op::Broadcast { .. }
        | Op::Permute { .. }
        | Op::Slice { .. }
        | Op::Pad { .. }
        | Op::Concat { .. }
        | Op::Gather { .. } => {
            // Every operand holds data, except gather's indices.
            let data_args = if matches!(op, Op::Gather { .. }) { &args[..1] } else { args };
            let data = match &args[0].data {
                Data::Float(_) => Data::Float(movement(op, &floats(data_args)?, args, shape)?),
                Data::Int(_) => Data::Int(movement(op, &ints(data_args)?, args, shape)?),
                Data::Bool(_) => Data::Bool(movement(op, &bools(data_args)?, args, shape)?),
            };
            Ok(Tensor { dtype: args[0].dtype, data })
        }
        Op::MatMul => matmul(args[0], args[1], shape),
        Op::Conv(attrs) => conv(float_array(args[0])?, float_array(args[1])?, attrs, shape)
            .map(|a| Tensor { dtype: args[0].dtype, data: Data::Float(a) }),
        Op::ConvTranspose { conv: attrs, .. } => {
            conv_transpose(float_array(args[0])?, float_array(args[1])?, attrs, shape)
                .map(|a| Tensor { dtype: args[0].dtype, data: Data::Float(a) })
        }
        Op::ReduceWindow { kind, window, stride, padding } => {
            reduce_window(args[0], *kind, window, stride, padding, shape)
        }
        Op::ScatterAdd { axis } => scatter_add(args[0], int_array(args[1])?, args[2], *axis),
    }
}

fn float_array(t: &Tensor) -> Result<&ArrayD<f64>> {
    match &t.data {
        Data::Float(a) => Ok(a),
        _ => Err(format!("expected a float tensor, got {}", t.dtype)),
    }
}

fn int_array(t: &Tensor) -> Result<&ArrayD<i64>> {
    match &t.data {
        Data::Int(a) => Ok(a),
        _ => Err(format!("expected an integer tensor, got {}", t.dtype)),
    }
}

fn bool_array(t: &Tensor) -> Result<&ArrayD<bool>> {
    match &t.data {
        Data::Bool(a) => Ok(a),
        _ => Err(format!("expected a bool tensor, got {}", t.dtype)),
    }
}

fn floats<'a>(args: &[&'a Tensor]) -> Result<Vec<&'a ArrayD<f64>>> {
    args.iter().map(|t| float_array(t)).collect()
}

fn ints<'a>(args: &[&'a Tensor]) -> Result<Vec<&'a ArrayD<i64>>> {
    args.iter().map(|t| int_array(t)).collect()
}

fn bools<'a>(args: &[&'a Tensor]) -> Result<Vec<&'a ArrayD<bool>>> {
    args.iter().map(|t| bool_array(t)).collect()
}

fn unary(op: UnaryOp, x: &Tensor) -> Result<Tensor> {
    let data = match &x.data {
        Data::Float(a) => Data::Float(a.mapv(|v| scalar::unary_float(op, v))),
        Data::Int(a) => Data::Int(a.mapv(|v| scalar::unary_int(op, v))),
        Data::Bool(a) => Data::Bool(a.mapv(|v| !v)),
    };
    if !op.accepts(x.dtype) {
        return Err(format!("{op:?} is not defined on {}", x.dtype));
    }
    Ok(Tensor { dtype: x.dtype, data })
}

fn zip<A: Clone, B>(a: &ArrayD<A>, b: &ArrayD<A>, f: impl Fn(A, A) -> B) -> Result<ArrayD<B>> {
    if a.shape() != b.shape() {
        return Err(format!("operand shapes differ: {:?} and {:?}", a.shape(), b.shape()));
    }
    Ok(ndarray::Zip::from(a).and(b).map_collect(|x, y| f(x.clone(), y.clone())))
}

fn binary(op: BinaryOp, x: &Tensor, y: &Tensor) -> Result<Tensor> {
    let data = match (&x.data, &y.data) {
        (Data::Float(a), Data::Float(b)) => Data::Float(zip(a, b, |p, q| scalar::binary_float(op, p, q))?),
        (Data::Int(a), Data::Int(b)) => {
            let r = zip(a, b, |p, q| scalar::binary_int(op, p, q))?;
            if r.iter().any(Option::is_none) {
                return Err("integer division by zero".into());
            }
            Data::Int(r.mapv(|v| v.unwrap_or(0)))
        }
        (Data::Bool(a), Data::Bool(b)) => Data::Bool(zip(a, b, |p, q| scalar::binary_bool(op, p, q))?),
        _ => return Err("operand dtypes differ".into()),
    };
    if !op.accepts(x.dtype) {
        return Err(format!("{op:?} is not defined on {}", x.dtype));
    }
    Ok(Tensor { dtype: x.dtype, data })
}

fn compare(op: CompareOp, x: &Tensor, y: &Tensor) -> Result<Tensor> {
    let result = match (&x.data, &y.data) {
        (Data::Float(a), Data::Float(b)) => zip(a, b, |p, q| scalar::compare(op, p, q))?,
        (Data::Int(a), Data::Int(b)) => zip(a, b, |p, q| scalar::compare(op, p, q))?,
        (Data::Bool(a), Data::Bool(b)) => zip(a, b, |p, q| scalar::compare(op, p, q))?,
        _ => return Err("operand dtypes differ".into()),
    };
    Ok(Tensor::bool(result))
}

fn select<T: Clone>(cond: &ArrayD<bool>, a: &ArrayD<T>, b: &ArrayD<T>) -> ArrayD<T> {
    ndarray::Zip::from(cond).and(a).and(b).map_collect(|&c, x, y| if c { x.clone() } else { y.clone() })
}

fn cast(x: &Tensor, to: DType) -> Tensor {
    match (&x.data, to) {
        (_, DType::Bool) => Tensor::bool(match &x.data {
            Data::Float(a) => a.mapv(|v| v != 0.0),
            Data::Int(a) => a.mapv(|v| v != 0),
            Data::Bool(a) => a.clone(),
        }),
        (Data::Float(a), t) if t.is_float() => Tensor::float(t, a.clone()),
        (Data::Float(a), DType::I32) => Tensor::int(DType::I32, a.mapv(|v| v as i32 as i64)),
        (Data::Float(a), t) => Tensor::int(t, a.mapv(|v| v as i64)),
        (Data::Int(a), t) if t.is_float() => Tensor::float(t, a.mapv(|v| v as f64)),
        (Data::Int(a), t) => Tensor::int(t, a.clone()),
        (Data::Bool(a), t) if t.is_float() => Tensor::float(t, a.mapv(|v| f64::from(u8::from(v)))),
        (Data::Bool(a), t) => Tensor::int(t, a.mapv(i64::from)),
    }
}

fn reduce(kind: ReduceKind, x: &Tensor, axes: &[usize], keepdims: bool) -> Result<Tensor> {
    fn fold<T: Clone>(a: &ArrayD<T>, axes: &[usize], keepdims: bool, init: T, f: impl Fn(&T, &T) -> T) -> ArrayD<T> {
        let mut r = a.clone();
        for &axis in axes.iter().rev() {
            r = r.fold_axis(Axis(axis), init.clone(), |acc, v| f(acc, v));
        }
        if keepdims {
            for &axis in axes {
                r = r.insert_axis(Axis(axis));
            }
        }
        r
    }
    let data = match (&x.data, kind) {
        (Data::Float(a), ReduceKind::Sum) => Data::Float(fold(a, axes, keepdims, 0.0, |p, q| p + q)),
        (Data::Float(a), ReduceKind::Max) => {
            Data::Float(fold(a, axes, keepdims, f64::NEG_INFINITY, |&p, &q| scalar::nan_or(p, q, p.max(q))))
        }
        (Data::Int(a), ReduceKind::Sum) => Data::Int(fold(a, axes, keepdims, 0, |p, q| p.wrapping_add(*q))),
        (Data::Int(a), ReduceKind::Max) => Data::Int(fold(a, axes, keepdims, i64::MIN, |p, q| *p.max(q))),
        (Data::Bool(_), _) => return Err("cannot reduce a bool tensor".into()),
    };
    Ok(Tensor { dtype: x.dtype, data })
}

/// Movement ops and gather, the same for every element type.
fn movement<T: Clone + Default>(
    op: &Op,
    arrays: &[&ArrayD<T>],
    args: &[&Tensor],
    shape: &[usize],
) -> Result<ArrayD<T>> {
    let x = arrays[0];
    let dim = IxDyn(shape);
    match op {
        Op::Reshape { .. } => {
            x.as_standard_layout().into_owned().into_shape_with_order(dim).map_err(|e| format!("reshape: {e}"))
        }
        Op::Broadcast { .. } => x
            .broadcast(dim)
            .map(|v| v.to_owned())
            .ok_or_else(|| format!("cannot broadcast {:?} to {shape:?}", x.shape())),
        Op::Permute { perm } => Ok(x.view().permuted_axes(IxDyn(perm)).as_standard_layout().into_owned()),
        Op::Slice { axis, start, stop, step } => {
            let slice = Slice::new(*start as isize, Some(*stop as isize), *step as isize);
            Ok(x.slice_axis(Axis(*axis), slice).to_owned())
        }
        Op::Pad { padding } => {
            let mut out = ArrayD::from_elem(dim, T::default());
            let mut view = out.view_mut();
            for (axis, &(lo, _)) in padding.iter().enumerate() {
                let len = x.shape()[axis] as isize;
                view.slice_axis_inplace(Axis(axis), Slice::from(lo as isize..lo as isize + len));
            }
            view.assign(x);
            Ok(out)
        }
        Op::Concat { axis } => {
            let views: Vec<_> = arrays.iter().map(|a| a.view()).collect();
            ndarray::concatenate(Axis(*axis), &views).map_err(|e| format!("concat: {e}"))
        }
        Op::Gather { axis } => {
            let indices = int_array(args[1])?;
            let size = x.shape()[*axis] as i64;
            if let Some(bad) = indices.iter().find(|&&i| i < 0 || i >= size) {
                return Err(format!("gather index {bad} is out of range 0..{size} on axis {axis}"));
            }
            let index_rank = indices.ndim();
            Ok(ArrayD::from_shape_fn(dim, |out| {
                let out = out.slice();
                let mut at: Vec<usize> = out[..*axis].to_vec();
                at.push(indices[IxDyn(&out[*axis..*axis + index_rank])] as usize);
                at.extend_from_slice(&out[*axis + index_rank..]);
                x[IxDyn(&at)].clone()
            }))
        }
        _ => Err(format!("{op:?} is not a movement op")),
    }
}

fn matmul(a: &Tensor, b: &Tensor, shape: &[usize]) -> Result<Tensor> {
    let (sa, sb) = (a.shape(), b.shape());
    let r = sa.len();
    let (m, k, n) = (sa[r - 2], sa[r - 1], sb[r - 1]);
    let batch: usize = sa[..r - 2].iter().product();
    let data = match (&a.data, &b.data) {
        (Data::Float(x), Data::Float(y)) => {
            let (x, y) = (batches(x, [batch, m, k])?, batches(y, [batch, k, n])?);
            let mut out = Vec::with_capacity(batch * m * n);
            for i in 0..batch {
                out.extend(x.index_axis(Axis(0), i).dot(&y.index_axis(Axis(0), i)).iter().copied());
            }
            Data::Float(ArrayD::from_shape_vec(IxDyn(shape), out).map_err(|e| e.to_string())?)
        }
        (Data::Int(x), Data::Int(y)) => {
            let (x, y) = (batches(x, [batch, m, k])?, batches(y, [batch, k, n])?);
            let mut out = Vec::with_capacity(batch * m * n);
            for i in 0..batch {
                out.extend(int_matmul(x.index_axis(Axis(0), i), y.index_axis(Axis(0), i)).iter().copied());
            }
            Data::Int(ArrayD::from_shape_vec(IxDyn(shape), out).map_err(|e| e.to_string())?)
        }
        _ => return Err("matmul needs two numeric operands of one dtype".into()),
    };
    Ok(Tensor { dtype: a.dtype, data })
}

fn int_matmul(x: ArrayView2<i64>, y: ArrayView2<i64>) -> Array2<i64> {
    let (m, k, n) = (x.nrows(), x.ncols(), y.ncols());
    Array2::from_shape_fn((m, n), |(i, j)| {
        (0..k).fold(0i64, |acc, l| acc.wrapping_add(x[[i, l]].wrapping_mul(y[[l, j]])))
    })
}

/// The input index a window position reads, or `None` when it falls in padding.
fn window_source(out: usize, k: usize, stride: u64, dilation: u64, pad_lo: u64, size: usize) -> Option<usize> {
    let pos = (out as u64 * stride + k as u64 * dilation).checked_sub(pad_lo)? as usize;
    (pos < size).then_some(pos)
}

/// The input position each spatial axis of output position `out` reads
/// at window offset `k`, into `at`; false when one falls in padding.
fn window_positions(out: &[usize], k: &[usize], attrs: &ConvAttrs, sizes: &[usize], at: &mut [usize]) -> bool {
    for d in 0..out.len() {
        match window_source(out[d], k[d], attrs.stride[d], attrs.dilation[d], attrs.padding[d].0, sizes[d]) {
            Some(pos) => at[d] = pos,
            None => return false,
        }
    }
    true
}

fn conv(x: &ArrayD<f64>, w: &ArrayD<f64>, attrs: &ConvAttrs, shape: &[usize]) -> Result<ArrayD<f64>> {
    let c_out = w.shape()[0];
    let c_in_group = w.shape()[1];
    let out_per_group = c_out / attrs.groups as usize;
    let kernel = &w.shape()[2..];
    let mut xi = vec![0usize; x.ndim()];
    let mut wi = vec![0usize; w.ndim()];
    Ok(ArrayD::from_shape_fn(IxDyn(shape), |out| {
        let out = out.slice();
        let (n, co) = (out[0], out[1]);
        let group = co / out_per_group;
        let mut acc = 0.0;
        for ci in 0..c_in_group {
            'kernel: for k in ndarray::indices(kernel) {
                let k = k.slice();
                xi[0] = n;
                xi[1] = group * c_in_group + ci;
                if !window_positions(&out[2..], k, attrs, &x.shape()[2..], &mut xi[2..]) {
                    continue 'kernel;
                }
                wi[0] = co;
                wi[1] = ci;
                wi[2..].copy_from_slice(k);
                acc += x[IxDyn(&xi)] * w[IxDyn(&wi)];
            }
        }
        acc
    }))
}

/// `out[n, ci, o * stride + k * dilation - lo] += g[n, co, o] * w[co, ci, k]`,
/// positions in padding dropped, in the order of `n, co, o, ci, k`.
fn conv_transpose(g: &ArrayD<f64>, w: &ArrayD<f64>, attrs: &ConvAttrs, shape: &[usize]) -> Result<ArrayD<f64>> {
    let mut out = ArrayD::<f64>::zeros(IxDyn(shape));
    let mut xi = vec![0usize; g.ndim()];
    let mut wi = vec![0usize; w.ndim()];
    let kernel = &w.shape()[2..];
    for (gi, &value) in g.indexed_iter() {
        let gi = gi.slice();
        for ci in 0..w.shape()[1] {
            'kernel: for k in ndarray::indices(kernel) {
                let k = k.slice();
                xi[0] = gi[0];
                xi[1] = ci;
                if !window_positions(&gi[2..], k, attrs, &shape[2..], &mut xi[2..]) {
                    continue 'kernel;
                }
                wi[0] = gi[1];
                wi[1] = ci;
                wi[2..].copy_from_slice(k);
                out[IxDyn(&xi)] += value * w[IxDyn(&wi)];
            }
        }
    }
    Ok(out)
}

fn reduce_window(
    x: &Tensor,
    kind: ReduceKind,
    window: &[u64],
    stride: &[u64],
    padding: &[(u64, u64)],
    shape: &[usize],
) -> Result<Tensor> {
    fn pool<T: Copy>(
        a: &ArrayD<T>,
        win: &[usize],
        stride: &[u64],
        padding: &[(u64, u64)],
        shape: &[usize],
        init: T,
        f: impl Fn(T, T) -> T,
    ) -> ArrayD<T> {
        let mut at = vec![0usize; a.ndim()];
        ArrayD::from_shape_fn(IxDyn(shape), |out| {
            let out = out.slice();
            let mut acc = init;
            'window: for k in ndarray::indices(win) {
                for d in 0..a.ndim() {
                    match window_source(out[d], k[d], stride[d], 1, padding[d].0, a.shape()[d]) {
                        Some(p) => at[d] = p,
                        None => continue 'window,
                    }
                }
                acc = f(acc, a[IxDyn(&at)]);
            }
            acc
        })
    }
    let win: Vec<usize> = window.iter().map(|&w| w as usize).collect();
    let data = match (&x.data, kind) {
        (Data::Float(a), ReduceKind::Sum) => Data::Float(pool(a, &win, stride, padding, shape, 0.0, |p, q| p + q)),
        (Data::Float(a), ReduceKind::Max) => {
            Data::Float(pool(a, &win, stride, padding, shape, f64::NEG_INFINITY, |p, q| scalar::nan_or(p, q, p.max(q))))
        }
        (Data::Int(a), ReduceKind::Sum) => Data::Int(pool(a, &win, stride, padding, shape, 0, i64::wrapping_add)),
        (Data::Int(a), ReduceKind::Max) => Data::Int(pool(a, &win, stride, padding, shape, i64::MIN, i64::max)),
        (Data::Bool(_), _) => return Err("cannot pool a bool tensor".into()),
    };
    Ok(Tensor { dtype: x.dtype, data })
}

fn scatter_add(base: &Tensor, indices: &ArrayD<i64>, updates: &Tensor, axis: usize) -> Result<Tensor> {
    fn scatter<T: Copy>(
        out: &mut ArrayD<T>,
        indices: &ArrayD<i64>,
        updates: &ArrayD<T>,
        axis: usize,
        add: impl Fn(T, T) -> T,
    ) {
        let index_rank = indices.ndim();
        let mut at = vec![0usize; out.ndim()];
        for (u, &v) in updates.indexed_iter() {
            let u = u.slice();
            at[..axis].copy_from_slice(&u[..axis]);
            at[axis] = indices[IxDyn(&u[axis..axis + index_rank])] as usize;
            at[axis + 1..].copy_from_slice(&u[axis + index_rank..]);
            let slot = &mut out[IxDyn(&at)];
            *slot = add(*slot, v);
        }
    }
    let size = base.shape()[axis] as i64;
    if let Some(bad) = indices.iter().find(|&&i| i < 0 || i >= size) {
        return Err(format!("scatter_add index {bad} is out of range 0..{size} on axis {axis}"));
    }
    let data = match (&base.data, &updates.data) {
        (Data::Float(b), Data::Float(u)) => {
            let mut out = b.clone();
            scatter(&mut out, indices, u, axis, |p, q| p + q);
            Data::Float(out)
        }
        (Data::Int(b), Data::Int(u)) => {
            let mut out = b.clone();
            scatter(&mut out, indices, u, axis, i64::wrapping_add);
            Data::Int(out)
        }
        _ => return Err("scatter_add needs numeric base and updates of one dtype".into()),
    };
    Ok(Tensor { dtype: base.dtype, data })
}

/// `x` as `dims[0]` matrices of `dims[1] x dims[2]`.
fn batches<T: Clone>(x: &ArrayD<T>, dims: [usize; 3]) -> Result<ndarray::Array3<T>> {
    x.as_standard_layout().into_owned().into_shape_with_order((dims[0], dims[1], dims[2])).map_err(|e| e.to_string())
}
