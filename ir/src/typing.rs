//! The typing rules of graph IR ops: one function, [`infer`], maps an op and
//! its operand types to the output type or says why the op does not apply.
//! The builder ([`crate::Graph::add`]) and the verifier both call it, so the
//! rules live in exactly one place.

use crate::graph::{InputDecl, ParamDecl};
use crate::op::{ConvAttrs, Op, ReduceKind};
use crate::types::{DType, Dim, Shape, TensorType};

/// What typing needs beyond the operands: the function's inputs and the
/// module's parameters.
#[derive(Clone, Copy)]
pub struct TypeContext<'a> {
    pub inputs: &'a [InputDecl],
    pub params: &'a [ParamDecl],
}

/// The output type of `op` applied to operands of types `args`.
pub fn infer(op: &Op, args: &[&TensorType], ctx: &TypeContext<'_>) -> Result<TensorType, String> {
    match op.arity() {
        Some(n) if n != args.len() => {
            return Err(format!("takes {n} operand{}, got {}", if n == 1 { "" } else { "s" }, args.len()));
        }
        None if args.is_empty() => return Err("takes at least one operand".into()),
        _ => {}
    }
    match op {
        Op::Input { index } => ctx
            .inputs
            .get(*index as usize)
            .map(|i| i.ty.clone())
            .ok_or_else(|| format!("input {index} does not exist (the function has {})", ctx.inputs.len())),
        Op::Param { name } => ctx
            .params
            .iter()
            .find(|p| &p.name == name)
            .map(|p| p.ty.clone())
            .ok_or_else(|| format!("parameter `{name}` is not declared")),
        Op::Constant { value, dtype, shape } => {
            if !value.fits(*dtype) {
                return Err(format!("literal {value:?} cannot fill a {dtype} tensor"));
            }
            Ok(TensorType::new(*dtype, shape.clone()))
        }
        Op::DimValue { .. } => Ok(TensorType::scalar(DType::I64)),
        Op::Iota { axis, dtype, shape } => {
            check_axis(*axis, shape.rank())?;
            if !dtype.is_numeric() {
                return Err(format!("iota needs a numeric dtype, not {dtype}"));
            }
            Ok(TensorType::new(*dtype, shape.clone()))
        }
        Op::RandomBits { dtype, shape, .. } => {
            expect_type(args[0], &TensorType::scalar(DType::I64), "the key")?;
            if !dtype.is_int() {
                return Err(format!("random bits need an integer dtype, not {dtype}"));
            }
            Ok(TensorType::new(*dtype, shape.clone()))
        }
        Op::Unary(u) => {
            if !u.accepts(args[0].dtype) {
                return Err(format!("{u:?} is not defined on {}", args[0].dtype));
            }
            Ok(args[0].clone())
        }
        Op::Binary(b) => {
            same_types(args[0], args[1])?;
            if !b.accepts(args[0].dtype) {
                return Err(format!("{b:?} is not defined on {}", args[0].dtype));
            }
            Ok(args[0].clone())
        }
        Op::Compare(c) => {
            same_types(args[0], args[1])?;
            if !c.accepts(args[0].dtype) {
                return Err(format!("{c:?} is not defined on {}", args[0].dtype));
            }
            Ok(TensorType::new(DType::Bool, args[0].shape.clone()))
        }
        Op::Select => {
            if args[0].dtype != DType::Bool {
                return Err(format!("the condition must be bool, not {}", args[0].dtype));
            }
            if args[0].shape != args[1].shape {
                return Err(format!("condition shape {} differs from value shape {}", args[0].shape, args[1].shape));
            }
            same_types(args[1], args[2])?;
            Ok(args[1].clone())
        }
        Op::Cast { to } => Ok(TensorType::new(*to, args[0].shape.clone())),
        Op::StopGradient => Ok(args[0].clone()),
        Op::Reduce { axes, keepdims, .. } => {
            numeric(args[0])?;
            check_axes(axes, args[0].rank())?;
            let dims = args[0].shape.dims().iter().enumerate();
            let shape = if *keepdims {
                dims.map(|(i, d)| if axes.contains(&i) { Dim::Const(1) } else { d.clone() }).collect()
            } else {
                dims.filter(|(i, _)| !axes.contains(i)).map(|(_, d)| d.clone()).collect()
            };
            Ok(TensorType::new(args[0].dtype, Shape(shape)))
        }
        Op::Reshape { shape } => {
            let (from, to) = (args[0].shape.element_count(), shape.element_count());
            if from != to {
                return Err(format!("cannot reshape {} ({from} elements) to {shape} ({to} elements)", args[0].shape));
            }
            Ok(TensorType::new(args[0].dtype, shape.clone()))
        }
        Op::Broadcast { shape } => {
            broadcastable(&args[0].shape, shape)?;
            Ok(TensorType::new(args[0].dtype, shape.clone()))
        }
        Op::Permute { perm } => {
            let rank = args[0].rank();
            let mut seen = vec![false; rank];
            if perm.len() != rank || perm.iter().any(|&p| p >= rank || std::mem::replace(&mut seen[p], true)) {
                return Err(format!("{perm:?} is not a permutation of {rank} axes"));
            }
            let dims = perm.iter().map(|&p| args[0].shape.0[p].clone()).collect();
            Ok(TensorType::new(args[0].dtype, Shape(dims)))
        }
        Op::Slice { axis, start, stop, step } => {
            check_axis(*axis, args[0].rank())?;
            let size = const_dim(&args[0].shape, *axis, "sliced")?;
            if *step == 0 || start > stop || *stop > size {
                return Err(format!("slice {start}..{stop} step {step} does not fit axis {axis} of size {size}"));
            }
            let mut shape = args[0].shape.clone();
            shape.0[*axis] = Dim::Const((stop - start).div_ceil(*step));
            Ok(TensorType::new(args[0].dtype, shape))
        }
        Op::Pad { padding } => {
            if padding.len() != args[0].rank() {
                return Err(format!("padding has {} entries for rank {}", padding.len(), args[0].rank()));
            }
            let mut shape = args[0].shape.clone();
            for (axis, &(lo, hi)) in padding.iter().enumerate() {
                if (lo, hi) != (0, 0) {
                    let size = const_dim(&args[0].shape, axis, "padded")?;
                    let padded = size.checked_add(lo).and_then(|s| s.checked_add(hi));
                    shape.0[axis] = Dim::Const(padded.ok_or_else(|| format!("padding axis {axis} overflows"))?);
                }
            }
            Ok(TensorType::new(args[0].dtype, shape))
        }
        Op::Concat { axis } => {
            let first = args[0];
            check_axis(*axis, first.rank())?;
            let mut total = 0;
            for (i, a) in args.iter().enumerate() {
                if a.dtype != first.dtype || a.rank() != first.rank() {
                    return Err(format!("operand {i} is {a}, operand 0 is {first}"));
                }
                for d in 0..first.rank() {
                    if d != *axis && a.shape.0[d] != first.shape.0[d] {
                        return Err(format!("operand {i} is {a}, operand 0 is {first}: dimension {d} differs"));
                    }
                }
                total = const_dim(&a.shape, *axis, "concatenated")?
                    .checked_add(total)
                    .ok_or_else(|| format!("concatenating along axis {axis} overflows"))?;
            }
            let mut shape = first.shape.clone();
            shape.0[*axis] = Dim::Const(total);
            Ok(TensorType::new(first.dtype, shape))
        }
        Op::MatMul => matmul(args[0], args[1]),
        Op::Conv(attrs) => conv(args[0], args[1], attrs),
        Op::ConvTranspose { conv: attrs, size } => conv_transpose(args[0], args[1], attrs, size),
        Op::ReduceWindow { kind, window, stride, padding } => {
            numeric(args[0])?;
            if *kind == ReduceKind::Max && args[0].dtype == DType::Bool {
                return Err("max pooling needs a numeric dtype".into());
            }
            let rank = args[0].rank();
            if window.len() != rank || stride.len() != rank || padding.len() != rank {
                return Err(format!("window, stride and padding need {rank} entries each"));
            }
            let mut dims = Vec::with_capacity(rank);
            for axis in 0..rank {
                if window[axis] == 1 && stride[axis] == 1 && padding[axis] == (0, 0) {
                    dims.push(args[0].shape.0[axis].clone());
                    continue;
                }
                let size = const_dim(&args[0].shape, axis, "pooled")?;
                dims.push(Dim::Const(window_output(size, window[axis], stride[axis], padding[axis], 1, axis)?));
            }
            Ok(TensorType::new(args[0].dtype, Shape(dims)))
        }
        Op::Gather { axis } => {
            let (x, idx) = (args[0], args[1]);
            check_axis(*axis, x.rank())?;
            if !idx.dtype.is_int() {
                return Err(format!("indices must be integers, not {}", idx.dtype));
            }
            let mut dims = x.shape.0[..*axis].to_vec();
            dims.extend(idx.shape.0.iter().cloned());
            dims.extend(x.shape.0[axis + 1..].iter().cloned());
            Ok(TensorType::new(x.dtype, Shape(dims)))
        }
        Op::ScatterAdd { axis } => {
            let (base, idx, updates) = (args[0], args[1], args[2]);
            numeric(base)?;
            let expected = infer(&Op::Gather { axis: *axis }, &[base, idx], ctx)?;
            expect_type(updates, &expected, "the updates")?;
            Ok(base.clone())
        }
    }
}

/// The output size of a window of `window` elements with `dilation`, moved by
/// `stride` over `size` elements padded by `padding`.
pub fn window_output(
    size: u64,
    window: u64,
    stride: u64,
    padding: (u64, u64),
    dilation: u64,
    axis: usize,
) -> Result<u64, String> {
    if window == 0 || stride == 0 || dilation == 0 {
        return Err(format!("axis {axis}: window, stride and dilation must be at least 1"));
    }
    let too_big = || format!("axis {axis}: the window or padding is too large");
    let padded = size.checked_add(padding.0).and_then(|p| p.checked_add(padding.1)).ok_or_else(too_big)?;
    let span = dilation.checked_mul(window - 1).and_then(|s| s.checked_add(1)).ok_or_else(too_big)?;
    if span > padded {
        return Err(format!(
            "axis {axis}: a window spanning {span} does not fit in {padded} (size {size} padded by {padding:?})"
        ));
    }
    Ok((padded - span) / stride + 1)
}

fn matmul(a: &TensorType, b: &TensorType) -> Result<TensorType, String> {
    same_dtype(a, b)?;
    numeric(a)?;
    if a.rank() < 2 || a.rank() != b.rank() {
        return Err(format!("matmul needs operands of equal rank >= 2, got {a} and {b}"));
    }
    let r = a.rank();
    if a.shape.0[..r - 2] != b.shape.0[..r - 2] {
        return Err(format!("batch dimensions differ: {a} and {b}"));
    }
    if a.shape.0[r - 1] != b.shape.0[r - 2] {
        return Err(format!(
            "contraction dimensions differ: {} in {a} and {} in {b}",
            a.shape.0[r - 1],
            b.shape.0[r - 2]
        ));
    }
    let mut dims = a.shape.0[..r - 1].to_vec();
    dims.push(b.shape.0[r - 1].clone());
    Ok(TensorType::new(a.dtype, Shape(dims)))
}

fn conv(x: &TensorType, w: &TensorType, attrs: &ConvAttrs) -> Result<TensorType, String> {
    same_dtype(x, w)?;
    if !x.dtype.is_float() {
        return Err(format!("convolution needs a float dtype, not {}", x.dtype));
    }
    let rank = x.rank();
    if rank < 3 || w.rank() != rank {
        return Err(format!(
            "convolution needs input [n, c, spatial..] and a weight of the same rank, got {x} and {w}"
        ));
    }
    let spatial = rank - 2;
    let ConvAttrs { stride, padding, dilation, groups } = attrs;
    if stride.len() != spatial || padding.len() != spatial || dilation.len() != spatial {
        return Err(format!("stride, padding and dilation need {spatial} entries each"));
    }
    if *groups == 0 {
        return Err("a convolution needs at least one group".into());
    }
    if *groups == 1 {
        // One group: the channel counts may be symbols, as long as they agree.
        if w.shape.0[1] != x.shape.0[1] {
            return Err(format!("weight {w} needs {} input channels, as the input {x} has", x.shape.0[1]));
        }
    } else {
        let c_in = const_dim(&x.shape, 1, "convolved channel")?;
        let c_out = const_dim(&w.shape, 0, "output channel")?;
        if c_in % groups != 0 || c_out % groups != 0 {
            return Err(format!("{groups} groups do not divide {c_in} input and {c_out} output channels"));
        }
        if w.shape.0[1] != Dim::Const(c_in / groups) {
            return Err(format!("weight {w} needs {} input channels per group ({c_in} / {groups})", c_in / groups));
        }
    }
    let mut dims = vec![x.shape.0[0].clone(), w.shape.0[0].clone()];
    for i in 0..spatial {
        let size = const_dim(&x.shape, i + 2, "spatial")?;
        let k = const_dim(&w.shape, i + 2, "kernel")?;
        dims.push(Dim::Const(window_output(size, k, stride[i], padding[i], dilation[i], i + 2)?));
    }
    Ok(TensorType::new(x.dtype, Shape(dims)))
}

/// `g: [n, c_out, y..]` and `w: [c_out, c_in, k..]` give `[n, c_in, size..]`
/// when a one-group convolution of that shape with `w` gives `g`'s shape.
fn conv_transpose(g: &TensorType, w: &TensorType, attrs: &ConvAttrs, size: &[u64]) -> Result<TensorType, String> {
    if attrs.groups != 1 {
        return Err(format!("a transposed convolution has one group, not {}", attrs.groups));
    }
    if g.rank() < 3 || w.rank() != g.rank() || size.len() != g.rank() - 2 {
        return Err(format!(
            "a transposed convolution needs [n, c, spatial..], a weight of the same rank and {} sizes, got {g}, {w} and {} sizes",
            g.rank().saturating_sub(2),
            size.len()
        ));
    }
    let mut dims = vec![g.shape.0[0].clone(), w.shape.0[1].clone()];
    dims.extend(size.iter().map(|&s| Dim::Const(s)));
    let input = TensorType::new(g.dtype, Shape(dims));
    let forward = conv(&input, w, attrs)?;
    if forward.shape != g.shape {
        return Err(format!("a convolution of {input} with {w} gives {forward}, not the {g} transposed here"));
    }
    Ok(input)
}

/// Checks that `from` broadcasts to `to` under NumPy's rules.
pub fn broadcastable(from: &Shape, to: &Shape) -> Result<(), String> {
    if from.rank() > to.rank() {
        return Err(format!("cannot broadcast {from} to the lower rank of {to}"));
    }
    let offset = to.rank() - from.rank();
    for (i, d) in from.0.iter().enumerate() {
        if *d != Dim::Const(1) && *d != to.0[offset + i] {
            return Err(format!(
                "cannot broadcast {from} to {to}: dimension {i} is {d}, not 1 or {}",
                to.0[offset + i]
            ));
        }
    }
    Ok(())
}

fn check_axis(axis: usize, rank: usize) -> Result<(), String> {
    if axis >= rank {
        return Err(format!("axis {axis} is out of range for rank {rank}"));
    }
    Ok(())
}

fn check_axes(axes: &[usize], rank: usize) -> Result<(), String> {
    for (i, &a) in axes.iter().enumerate() {
        check_axis(a, rank)?;
        if i > 0 && axes[i - 1] >= a {
            return Err(format!("axes {axes:?} must be sorted and unique"));
        }
    }
    Ok(())
}

fn const_dim(shape: &Shape, axis: usize, what: &str) -> Result<u64, String> {
    shape.0[axis]
        .as_const()
        .ok_or_else(|| format!("the {what} axis {axis} of {shape} must have a constant size, not {}", shape.0[axis]))
}

fn numeric(t: &TensorType) -> Result<(), String> {
    if !t.dtype.is_numeric() {
        return Err(format!("needs a numeric dtype, not {}", t.dtype));
    }
    Ok(())
}

fn same_dtype(a: &TensorType, b: &TensorType) -> Result<(), String> {
    if a.dtype != b.dtype {
        return Err(format!("dtypes differ: {a} and {b}"));
    }
    Ok(())
}

fn same_types(a: &TensorType, b: &TensorType) -> Result<(), String> {
    if a != b {
        return Err(format!("operand types differ: {a} and {b}"));
    }
    Ok(())
}

fn expect_type(got: &TensorType, expected: &TensorType, what: &str) -> Result<(), String> {
    if got != expected {
        return Err(format!("{what} must be {expected}, not {got}"));
    }
    Ok(())
}
