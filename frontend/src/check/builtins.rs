//! The builtin functions: the language's view of the IR primitives. Each
//! checks its arguments and emits one or a few primitives; composites are
//! written in the prelude instead. `docs/dsl.md` lists them with signatures.

use kiln_ir::{BinaryOp, ConvAttrs, DType, Dim, Literal, Op, ReduceKind, Shape, TensorType, UnaryOp};

use super::Checker;
use super::env::Value;
use super::expr::ActualArg;
use super::signature::value_dim;
use super::tensor::{Operand, normalize_axis};
use crate::diag::{Code, Diagnostic};
use crate::source::Span;

/// Every builtin name, for lookup and suggestions.
pub const NAMES: &[&str] = &[
    "exp",
    "log",
    "sqrt",
    "sin",
    "cos",
    "tanh",
    "abs",
    "sign",
    "floor",
    "sum",
    "mean",
    "max",
    "min",
    "where",
    "cast",
    "reshape",
    "transpose",
    "broadcast_to",
    "unsqueeze",
    "squeeze",
    "concat",
    "stack",
    "pad",
    "iota",
    "gather",
    "scatter_add",
    "conv",
    "pool_max",
    "pool_sum",
    "stop_gradient",
    "uniform_like",
    "size",
    "rank",
    "shape",
];

pub fn find(name: &str) -> Option<&'static str> {
    NAMES.iter().copied().find(|n| *n == name)
}

type Slot = Option<(Value, Span)>;

impl Checker<'_> {
    /// Binds builtin arguments to `params`; the first `required` must be given.
    fn builtin_args(
        &mut self,
        name: &str,
        params: &[&str],
        required: usize,
        args: Vec<ActualArg>,
        span: Span,
    ) -> Option<Vec<Slot>> {
        let mut slots: Vec<Slot> = vec![None; params.len()];
        let mut positional = 0;
        for a in args {
            let index = match &a.name {
                None if positional < params.len() => {
                    positional += 1;
                    positional - 1
                }
                None => {
                    self.error(
                        Diagnostic::new(
                            Code("E0301"),
                            a.span,
                            format!("`{name}` takes at most {}", count(params.len(), "argument")),
                        )
                        .label("extra argument")
                        .note(format!("`{name}({})`", params.join(", "))),
                    );
                    return None;
                }
                Some(n) => match params.iter().position(|p| *p == n.name) {
                    Some(i) => i,
                    None => {
                        self.error(
                            Diagnostic::new(Code("E0302"), n.span, format!("`{name}` has no parameter `{}`", n.name))
                                .label("unknown argument name")
                                .note(format!("`{name}({})`", params.join(", "))),
                        );
                        return None;
                    }
                },
            };
            if slots[index].is_some() {
                self.error(
                    Diagnostic::new(Code("E0303"), a.span, format!("`{}` of `{name}` is given twice", params[index]))
                        .label("given again"),
                );
                return None;
            }
            slots[index] = Some((a.value, a.span));
        }
        if let Some(missing) = slots[..required].iter().position(Option::is_none) {
            self.error(
                Diagnostic::new(Code("E0303"), span, format!("`{name}` needs argument `{}`", params[missing]))
                    .label(format!("missing `{}`", params[missing]))
                    .note(format!("`{name}({})`", params.join(", "))),
            );
            return None;
        }
        Some(slots)
    }

    fn tensor_arg(&mut self, name: &str, slot: &Slot) -> Option<kiln_ir::NodeId> {
        match slot {
            Some((Value::Tensor(id), _)) => Some(*id),
            Some((Value::Poison, _)) | None => None,
            Some((other, s)) => {
                let what = other.describe(|id| self.ty(id));
                self.error(
                    Diagnostic::new(Code("E0304"), *s, format!("`{name}` needs a tensor here, not {what}"))
                        .label("expected a tensor"),
                );
                None
            }
        }
    }

    fn int_arg(&mut self, name: &str, slot: &Slot, default: i64) -> Option<i64> {
        match slot {
            None => Some(default),
            Some((Value::Int(i), _)) => Some(*i),
            Some((Value::Poison, _)) => None,
            Some((other, s)) => {
                let what = other.describe(|id| self.ty(id));
                self.error(
                    Diagnostic::new(
                        Code("E0304"),
                        *s,
                        format!("`{name}` needs a compile-time integer here, not {what}"),
                    )
                    .label("expected an integer"),
                );
                None
            }
        }
    }

    fn bool_arg(&mut self, name: &str, slot: &Slot) -> Option<bool> {
        match slot {
            None => Some(false),
            Some((Value::Bool(b), _)) => Some(*b),
            Some((Value::Poison, _)) => None,
            Some((other, s)) => {
                let what = other.describe(|id| self.ty(id));
                self.error(
                    Diagnostic::new(Code("E0304"), *s, format!("`{name}` needs `true` or `false` here, not {what}"))
                        .label("expected a boolean"),
                );
                None
            }
        }
    }

    /// An integer or a list of `n` non-negative integers (one per spatial axis).
    fn per_axis(&mut self, name: &str, slot: &Slot, n: usize, default: u64) -> Option<Vec<u64>> {
        let values = match slot {
            None => return Some(vec![default; n]),
            Some((Value::Int(i), _)) if *i >= 0 => return Some(vec![*i as u64; n]),
            Some((Value::List(items), s)) => {
                let ints: Option<Vec<u64>> =
                    items.iter().map(|v| if let Value::Int(i) = v { u64::try_from(*i).ok() } else { None }).collect();
                match ints {
                    Some(v) if v.len() == n => return Some(v),
                    _ => (s, format!("a list of {n} non-negative integers")),
                }
            }
            Some((Value::Poison, _)) => return None,
            Some((_, s)) => (s, format!("a non-negative integer or a list of {n}")),
        };
        let (s, expected) = values;
        self.error(Diagnostic::new(Code("E0304"), *s, format!("`{name}` needs {expected} here")).label("bad value"));
        None
    }

    fn dims_arg(&mut self, name: &str, slot: &Slot) -> Option<Vec<(Value, Span)>> {
        match slot {
            Some((Value::List(items), s)) => Some(items.iter().map(|v| (v.clone(), *s)).collect()),
            Some((Value::Poison, _)) | None => None,
            Some((other, s)) => {
                let what = other.describe(|id| self.ty(id));
                self.error(
                    Diagnostic::new(
                        Code("E0304"),
                        *s,
                        format!("`{name}` needs a list of dimensions like `[N, 10]`, not {what}"),
                    )
                    .label("expected a list"),
                );
                None
            }
        }
    }

    fn shape_arg(&mut self, name: &str, slot: &Slot) -> Option<Shape> {
        let dims = self.dims_arg(name, slot)?;
        let mut shape = Vec::new();
        for (v, s) in dims {
            match value_dim(&v) {
                Some(d) => shape.push(d),
                None => {
                    let what = v.describe(|id| self.ty(id));
                    self.error(
                        Diagnostic::new(
                            Code("E0405"),
                            s,
                            format!("a dimension must be a size or a symbol, not {what}"),
                        )
                        .label("not a dimension"),
                    );
                    return None;
                }
            }
        }
        Some(Shape(shape))
    }

    pub fn builtin(&mut self, name: &'static str, args: Vec<ActualArg>, span: Span) -> Value {
        self.builtin_inner(name, args, span).unwrap_or(Value::Poison)
    }

    fn builtin_inner(&mut self, name: &'static str, args: Vec<ActualArg>, span: Span) -> Option<Value> {
        let unary = match name {
            "exp" => Some(UnaryOp::Exp),
            "log" => Some(UnaryOp::Log),
            "sqrt" => Some(UnaryOp::Sqrt),
            "sin" => Some(UnaryOp::Sin),
            "cos" => Some(UnaryOp::Cos),
            "tanh" => Some(UnaryOp::Tanh),
            "abs" => Some(UnaryOp::Abs),
            "sign" => Some(UnaryOp::Sign),
            "floor" => Some(UnaryOp::Floor),
            _ => None,
        };
        if let Some(op) = unary {
            let a = self.builtin_args(name, &["x"], 1, args, span)?;
            let (v, _) = a[0].clone()?;
            return Some(self.unary(op, v, name, span));
        }
        match name {
            "sum" | "mean" => {
                let a = self.builtin_args(name, &["x", "axis", "keepdims"], 1, args, span)?;
                let x = self.tensor_arg(name, &a[0])?;
                let keepdims = self.bool_arg(name, &a[2])?;
                Some(self.reduce(ReduceKind::Sum, name == "mean", x, a[1].clone(), keepdims, span))
            }
            "max" | "min" => self.max_min(name, args, span),
            "where" => {
                let a = self.builtin_args(name, &["condition", "a", "b"], 3, args, span)?;
                let (c, x, y) = (a[0].clone()?, a[1].clone()?, a[2].clone()?);
                if let Value::Tensor(id) = &c.0 {
                    let ty = self.ty(*id);
                    if ty.dtype != DType::Bool {
                        self.error(
                            Diagnostic::new(
                                Code("E0401"),
                                c.1,
                                format!("the condition of `where` must be bool, not {ty}"),
                            )
                            .label(format!("this is {ty}"))
                            .hint("compare to get a condition, for example `x > 0.0`"),
                        );
                        return None;
                    }
                }
                let cond = self.operand(&c.0, DType::Bool, c.1, (c.1, "the condition".into()))?;
                let Some(dtype) = self.tensor_dtype(&[&x.0, &y.0]) else {
                    self.error(
                        Diagnostic::new(Code("E0304"), span, "`where` needs a tensor among its values")
                            .label("both values are numbers"),
                    );
                    return None;
                };
                let anchor = self.anchor(&[x.clone(), y.clone()], span);
                let ox = self.operand(&x.0, dtype, x.1, anchor.clone())?;
                let oy = self.operand(&y.0, dtype, y.1, anchor)?;
                let ids =
                    self.broadcast_all(&[(cond, c.1), (ox, x.1), (oy, y.1)], &[DType::Bool, dtype, dtype], span)?;
                Some(self.emit(Op::Select, &ids, span))
            }
            "cast" => {
                let a = self.builtin_args(name, &["x", "dtype"], 2, args, span)?;
                let x = self.tensor_arg(name, &a[0])?;
                match a[1].clone()? {
                    (Value::DType(to), _) => {
                        if self.ty(x).dtype == to {
                            return Some(Value::Tensor(x));
                        }
                        Some(self.emit(Op::Cast { to }, &[x], span))
                    }
                    (Value::Poison, _) => None,
                    (other, s) => {
                        let what = other.describe(|id| self.ty(id));
                        self.error(
                            Diagnostic::new(
                                Code("E0304"),
                                s,
                                format!("`cast` needs a dtype such as `f32`, not {what}"),
                            )
                            .label("not a dtype"),
                        );
                        None
                    }
                }
            }
            "reshape" => {
                let a = self.builtin_args(name, &["x", "shape"], 2, args, span)?;
                let x = self.tensor_arg(name, &a[0])?;
                let dims = self.dims_arg(name, &a[1])?;
                Some(self.reshape(x, &dims, span))
            }
            "transpose" => {
                let a = self.builtin_args(name, &["x", "perm"], 1, args, span)?;
                let x = self.tensor_arg(name, &a[0])?;
                let ty = self.ty(x);
                let perm: Vec<usize> = match &a[1] {
                    None if ty.rank() >= 2 => {
                        let mut p: Vec<usize> = (0..ty.rank()).collect();
                        p.swap(ty.rank() - 2, ty.rank() - 1);
                        p
                    }
                    None => {
                        self.error(
                            Diagnostic::new(
                                Code("E0404"),
                                span,
                                format!(
                                    "`transpose` without `perm` swaps the last two axes, but {ty} has rank {}",
                                    ty.rank()
                                ),
                            )
                            .label("rank below 2"),
                        );
                        return None;
                    }
                    Some((v, s)) => {
                        let p = match v {
                            Value::List(items) => items
                                .iter()
                                .map(|i| if let Value::Int(i) = i { normalize_axis(*i, ty.rank()) } else { None })
                                .collect::<Option<Vec<_>>>(),
                            _ => None,
                        };
                        let mut sorted = p.clone().unwrap_or_default();
                        sorted.sort_unstable();
                        if p.is_none() || sorted != (0..ty.rank()).collect::<Vec<_>>() {
                            self.error(
                                Diagnostic::new(
                                    Code("E0404"),
                                    *s,
                                    format!("`perm` must be a permutation of the {} axes of {ty}", ty.rank()),
                                )
                                .label("not a permutation"),
                            );
                            return None;
                        }
                        p.unwrap_or_default()
                    }
                };
                Some(self.emit(Op::Permute { perm }, &[x], span))
            }
            "broadcast_to" => {
                let a = self.builtin_args(name, &["x", "shape"], 2, args, span)?;
                let x = self.tensor_arg(name, &a[0])?;
                let shape = self.shape_arg(name, &a[1])?;
                let ty = self.ty(x);
                if let Err(message) = kiln_ir::broadcastable(&ty.shape, &shape) {
                    self.error(Diagnostic::new(Code("E0402"), span, message).label(format!("this is {ty}")));
                    return None;
                }
                self.broadcast_to(x, &shape, span).map(Value::Tensor)
            }
            "unsqueeze" | "squeeze" => {
                let a = self.builtin_args(name, &["x", "axis"], 2, args, span)?;
                let x = self.tensor_arg(name, &a[0])?;
                let axis = self.int_arg(name, &a[1], 0)?;
                let ty = self.ty(x);
                let mut dims = ty.shape.0.clone();
                let rank = if name == "unsqueeze" { ty.rank() + 1 } else { ty.rank() };
                let Some(at) = normalize_axis(axis, rank) else {
                    self.error(
                        Diagnostic::new(
                            Code("E0404"),
                            a[1].as_ref()?.1,
                            format!("axis {axis} is out of range for `{name}` of {ty}"),
                        )
                        .label("bad axis"),
                    );
                    return None;
                };
                if name == "unsqueeze" {
                    dims.insert(at, Dim::Const(1));
                } else if dims[at] != Dim::Const(1) {
                    self.error(
                        Diagnostic::new(
                            Code("E0405"),
                            a[1].as_ref()?.1,
                            format!("cannot squeeze axis {axis} of {ty}: its size is {}, not 1", dims[at]),
                        )
                        .label("not a size-1 axis"),
                    );
                    return None;
                } else {
                    dims.remove(at);
                }
                self.reshape_node(x, Shape(dims), span).map(Value::Tensor)
            }
            "concat" | "stack" => self.concat(name, args, span),
            "pad" => {
                let a = self.builtin_args(name, &["x", "padding"], 2, args, span)?;
                let x = self.tensor_arg(name, &a[0])?;
                let ty = self.ty(x);
                let (v, s) = a[1].clone()?;
                let pairs: Option<Vec<(u64, u64)>> = match &v {
                    Value::List(items) if items.len() == ty.rank() => items
                        .iter()
                        .map(|p| match p {
                            Value::List(pair) => match pair.as_slice() {
                                [Value::Int(lo), Value::Int(hi)] if *lo >= 0 && *hi >= 0 => {
                                    Some((*lo as u64, *hi as u64))
                                }
                                _ => None,
                            },
                            _ => None,
                        })
                        .collect(),
                    _ => None,
                };
                let Some(pairs) = pairs else {
                    self.error(
                        Diagnostic::new(
                            Code("E0304"),
                            s,
                            format!("`pad` needs one `[before, after]` pair per axis of {ty}"),
                        )
                        .label("bad padding"),
                    );
                    return None;
                };
                for (axis, p) in pairs.iter().enumerate() {
                    if *p != (0, 0) && ty.shape.0[axis].as_const().is_none() {
                        self.error(
                            Diagnostic::new(
                                Code("E0408"),
                                s,
                                format!("cannot pad axis {axis} of {ty}: its size is symbolic"),
                            )
                            .label("padding a symbolic axis"),
                        );
                        return None;
                    }
                }
                Some(self.emit(Op::Pad { padding: pairs }, &[x], span))
            }
            "iota" => {
                let a = self.builtin_args(name, &["shape", "axis", "dtype"], 1, args, span)?;
                let shape = self.shape_arg(name, &a[0])?;
                let axis = self.int_arg(name, &a[1], 0)?;
                let dtype = match &a[2] {
                    None => DType::I32,
                    Some((Value::DType(d), _)) if d.is_numeric() => *d,
                    Some((_, s)) => {
                        self.error(
                            Diagnostic::new(Code("E0304"), *s, "`iota` needs a numeric dtype")
                                .label("not a numeric dtype"),
                        );
                        return None;
                    }
                };
                let Some(axis) = normalize_axis(axis, shape.rank()) else {
                    self.error(
                        Diagnostic::new(Code("E0404"), span, format!("axis {axis} is out of range for shape {shape}"))
                            .label("bad axis"),
                    );
                    return None;
                };
                Some(self.emit(Op::Iota { axis, dtype, shape }, &[], span))
            }
            "gather" => {
                let a = self.builtin_args(name, &["x", "indices", "axis"], 2, args, span)?;
                let x = self.tensor_arg(name, &a[0])?;
                let idx = self.index_arg(name, &a[1])?;
                let ty = self.ty(x);
                let axis = self.axis_arg(name, &a[2], &ty, span)?;
                Some(self.emit(Op::Gather { axis }, &[x, idx], span))
            }
            "scatter_add" => {
                let a = self.builtin_args(name, &["base", "indices", "updates", "axis"], 3, args, span)?;
                let base = self.tensor_arg(name, &a[0])?;
                let idx = self.index_arg(name, &a[1])?;
                let updates = self.tensor_arg(name, &a[2])?;
                let ty = self.ty(base);
                let axis = self.axis_arg(name, &a[3], &ty, span)?;
                let ctx = kiln_ir::TypeContext { inputs: &[], params: &[] };
                let (ti, tu) = (self.ty(idx), self.ty(updates));
                if let Err(message) = kiln_ir::infer(&Op::ScatterAdd { axis }, &[&ty, &ti, &tu], &ctx) {
                    self.error(
                        Diagnostic::new(Code("E0402"), span, format!("`scatter_add`: {message}"))
                            .label(format!("base {ty}, indices {ti}, updates {tu}")),
                    );
                    return None;
                }
                Some(self.emit(Op::ScatterAdd { axis }, &[base, idx, updates], span))
            }
            "conv" => self.conv(args, span),
            "pool_max" | "pool_sum" => self.pool(name, args, span),
            "stop_gradient" => {
                let a = self.builtin_args(name, &["x"], 1, args, span)?;
                let x = self.tensor_arg(name, &a[0])?;
                Some(self.emit(Op::StopGradient, &[x], span))
            }
            "uniform_like" => {
                let a = self.builtin_args(name, &["x"], 1, args, span)?;
                let x = self.tensor_arg(name, &a[0])?;
                let ty = self.ty(x);
                let dtype = if ty.dtype.is_float() { ty.dtype } else { DType::F32 };
                Some(self.uniform(&ty.shape, dtype, span)?)
            }
            "size" => {
                let a = self.builtin_args(name, &["x", "axis"], 2, args, span)?;
                let x = self.tensor_arg(name, &a[0])?;
                let ty = self.ty(x);
                let axis = self.axis_arg(name, &a[1], &ty, span)?;
                Some(super::signature::dim_value(&ty.shape.0[axis]))
            }
            "rank" | "shape" => {
                let a = self.builtin_args(name, &["x"], 1, args, span)?;
                let x = self.tensor_arg(name, &a[0])?;
                let ty = self.ty(x);
                Some(match name {
                    "rank" => Value::Int(ty.rank() as i64),
                    _ => Value::List(ty.shape.0.iter().map(super::signature::dim_value).collect()),
                })
            }
            _ => {
                self.error(
                    Diagnostic::new(
                        Code("E0801"),
                        span,
                        format!("internal error: builtin `{name}` has no implementation"),
                    )
                    .label("here"),
                );
                None
            }
        }
    }

    fn index_arg(&mut self, name: &str, slot: &Slot) -> Option<kiln_ir::NodeId> {
        let idx = self.tensor_arg(name, slot)?;
        if !self.ty(idx).dtype.is_int() {
            let ty = self.ty(idx);
            self.error(
                Diagnostic::new(Code("E0401"), slot.as_ref()?.1, format!("indices must be integers, not {ty}"))
                    .label("not integer indices"),
            );
            return None;
        }
        Some(idx)
    }

    fn axis_arg(&mut self, name: &str, slot: &Slot, ty: &TensorType, span: Span) -> Option<usize> {
        let axis = self.int_arg(name, slot, 0)?;
        let at = normalize_axis(axis, ty.rank());
        if at.is_none() {
            let s = slot.as_ref().map_or(span, |s| s.1);
            self.error(
                Diagnostic::new(Code("E0404"), s, format!("axis {axis} is out of range for {ty}")).label("bad axis"),
            );
        }
        at
    }

    /// `max(x, axis, keepdims)` reduces; `max(a, b)` is elementwise.
    fn max_min(&mut self, name: &'static str, args: Vec<ActualArg>, span: Span) -> Option<Value> {
        let positional = args.iter().filter(|a| a.name.is_none()).count();
        let is_min = name == "min";
        let second_is_value =
            positional >= 2 && !matches!(args[1].value, Value::Int(_) | Value::List(_)) && args[1].name.is_none();
        if second_is_value {
            let a = self.builtin_args(name, &["a", "b"], 2, args, span)?;
            let (x, y) = (a[0].clone()?, a[1].clone()?);
            let op = if is_min { BinaryOp::Min } else { BinaryOp::Max };
            return Some(self.elementwise(Op::Binary(op), &[x, y], span, |d| d.is_numeric(), &format!("`{name}`")));
        }
        let a = self.builtin_args(name, &["x", "axis", "keepdims"], 1, args, span)?;
        let x = self.tensor_arg(name, &a[0])?;
        let keepdims = self.bool_arg(name, &a[2])?;
        if !is_min {
            return Some(self.reduce(ReduceKind::Max, false, x, a[1].clone(), keepdims, span));
        }
        let Value::Tensor(neg) = self.unary(UnaryOp::Neg, Value::Tensor(x), "min", span) else { return None };
        let m = self.reduce(ReduceKind::Max, false, neg, a[1].clone(), keepdims, span);
        Some(self.unary(UnaryOp::Neg, m, "min", span))
    }

    fn concat(&mut self, name: &'static str, args: Vec<ActualArg>, span: Span) -> Option<Value> {
        let a = self.builtin_args(name, &["tensors", "axis"], 1, args, span)?;
        let (list, list_span) = a[0].clone()?;
        let Value::List(items) = list else {
            self.error(
                Diagnostic::new(Code("E0304"), list_span, format!("`{name}` needs a list of tensors like `[a, b]`"))
                    .label("not a list"),
            );
            return None;
        };
        let mut ids = Vec::new();
        for v in &items {
            match v {
                Value::Tensor(id) => ids.push(*id),
                Value::Poison => return None,
                other => {
                    let what = other.describe(|id| self.ty(id));
                    self.error(
                        Diagnostic::new(Code("E0304"), list_span, format!("`{name}` needs tensors, found {what}"))
                            .label("not a tensor"),
                    );
                    return None;
                }
            }
        }
        let Some(&first) = ids.first() else {
            self.error(
                Diagnostic::new(Code("E0304"), list_span, format!("`{name}` needs at least one tensor"))
                    .label("empty list"),
            );
            return None;
        };
        let first_ty = self.ty(first);
        let rank = if name == "stack" { first_ty.rank() + 1 } else { first_ty.rank() };
        let axis_value = self.int_arg(name, &a[1], 0)?;
        let axis_span = a[1].as_ref().map_or(span, |s| s.1);
        let Some(axis) = normalize_axis(axis_value, rank) else {
            self.error(
                Diagnostic::new(
                    Code("E0404"),
                    axis_span,
                    format!("axis {axis_value} is out of range for `{name}` of {first_ty}"),
                )
                .label("bad axis"),
            );
            return None;
        };
        if name == "stack" {
            for id in ids.iter_mut() {
                let mut dims = self.ty(*id).shape.0;
                if dims.len() + 1 != rank {
                    break;
                }
                dims.insert(axis, Dim::Const(1));
                *id = self.reshape_node(*id, Shape(dims), span)?;
            }
        }
        let base = self.ty(ids[0]);
        for (i, id) in ids.iter().enumerate() {
            let t = self.ty(*id);
            let same = t.dtype == base.dtype
                && t.rank() == base.rank()
                && (0..t.rank()).all(|d| d == axis || t.shape.0[d] == base.shape.0[d]);
            if !same {
                self.error(
                    Diagnostic::new(
                        Code("E0402"),
                        list_span,
                        format!("`{name}` along axis {axis}: tensor {i} is {t}, tensor 0 is {base}"),
                    )
                    .label("these tensors do not fit together")
                    .hint(format!("all dimensions but axis {axis} must be equal, and the dtypes too")),
                );
                return None;
            }
            if t.shape.0[axis].as_const().is_none() {
                self.error(
                    Diagnostic::new(
                        Code("E0408"),
                        list_span,
                        format!("`{name}` along a symbolic axis of {t} is not supported"),
                    )
                    .label("symbolic axis"),
                );
                return None;
            }
        }
        Some(self.emit(Op::Concat { axis }, &ids, span))
    }

    fn conv(&mut self, args: Vec<ActualArg>, span: Span) -> Option<Value> {
        let a = self.builtin_args("conv", &["x", "w", "stride", "padding", "dilation", "groups"], 2, args, span)?;
        let x = self.tensor_arg("conv", &a[0])?;
        let w = self.tensor_arg("conv", &a[1])?;
        let (tx, tw) = (self.ty(x), self.ty(w));
        if tx.rank() < 3 {
            self.error(
                Diagnostic::new(
                    Code("E0404"),
                    a[0].as_ref()?.1,
                    format!("`conv` needs an input [batch, channels, spatial...], got {tx}"),
                )
                .label("rank below 3"),
            );
            return None;
        }
        let n = tx.rank() - 2;
        let stride = self.per_axis("conv", &a[2], n, 1)?;
        let pad = self.per_axis("conv", &a[3], n, 0)?;
        let dilation = self.per_axis("conv", &a[4], n, 1)?;
        let groups = self.int_arg("conv", &a[5], 1)?.max(0) as u64;
        let attrs = ConvAttrs { stride, padding: pad.iter().map(|&p| (p, p)).collect(), dilation, groups };
        let ctx = kiln_ir::TypeContext { inputs: &[], params: &[] };
        if let Err(message) = kiln_ir::infer(&Op::Conv(attrs.clone()), &[&tx, &tw], &ctx) {
            self.error(
                Diagnostic::new(Code("E0402"), span, format!("`conv` of {tx} with weight {tw}: {message}"))
                    .label("these do not convolve")
                    .also(a[1].as_ref()?.1, format!("the weight is {tw}")),
            );
            return None;
        }
        Some(self.emit(Op::Conv(attrs), &[x, w], span))
    }

    fn pool(&mut self, name: &'static str, args: Vec<ActualArg>, span: Span) -> Option<Value> {
        let a = self.builtin_args(name, &["x", "window", "stride", "padding"], 2, args, span)?;
        let x = self.tensor_arg(name, &a[0])?;
        let tx = self.ty(x);
        if tx.rank() < 3 {
            self.error(
                Diagnostic::new(
                    Code("E0404"),
                    a[0].as_ref()?.1,
                    format!("`{name}` needs an input [batch, channels, spatial...], got {tx}"),
                )
                .label("rank below 3"),
            );
            return None;
        }
        let n = tx.rank() - 2;
        let window = self.per_axis(name, &a[1], n, 1)?;
        let stride = match &a[2] {
            None => window.clone(),
            s => self.per_axis(name, s, n, 1)?,
        };
        let pad = self.per_axis(name, &a[3], n, 0)?;
        let full = |v: &[u64], fill: u64| [fill, fill].iter().chain(v).copied().collect::<Vec<u64>>();
        let padding: Vec<(u64, u64)> = full(&pad, 0).into_iter().map(|p| (p, p)).collect();
        let kind = if name == "pool_max" { ReduceKind::Max } else { ReduceKind::Sum };
        let op = Op::ReduceWindow { kind, window: full(&window, 1), stride: full(&stride, 1), padding };
        let ctx = kiln_ir::TypeContext { inputs: &[], params: &[] };
        if let Err(message) = kiln_ir::infer(&op, &[&tx], &ctx) {
            self.error(
                Diagnostic::new(Code("E0402"), span, format!("`{name}` of {tx}: {message}"))
                    .label("this window does not fit"),
            );
            return None;
        }
        Some(self.emit(op, &[x], span))
    }

    /// Uniform floats in [0, 1) of `shape`, from the function's random key
    /// (an implicit `key: i64[]` input added on first use) and a fresh stream.
    fn uniform(&mut self, shape: &Shape, dtype: DType, span: Span) -> Option<Value> {
        let key = match self.key {
            Some(k) => k,
            None => {
                let index = self.func.inputs.len() as u32;
                self.func.inputs.push(kiln_ir::InputDecl { name: "key".into(), ty: TensorType::scalar(DType::I64) });
                let Value::Tensor(k) = self.emit(Op::Input { index }, &[], span) else { return None };
                self.key = Some(k);
                k
            }
        };
        let stream = self.next_stream;
        self.next_stream += 1;
        let Value::Tensor(bits) =
            self.emit(Op::RandomBits { stream, dtype: DType::I32, shape: shape.clone() }, &[key], span)
        else {
            return None;
        };
        let Value::Tensor(f) = self.emit(Op::Cast { to: dtype }, &[bits], span) else { return None };
        let scale = Operand::Lit(Literal::float(1.0 / 2147483648.0));
        let ids = self.broadcast_all(&[(Operand::Node(f), span), (scale, span)], &[dtype, dtype], span)?;
        Some(self.emit(Op::Binary(BinaryOp::Mul), &ids, span))
    }
}

/// `1 argument`, `2 arguments`.
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}
