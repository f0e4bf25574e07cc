//! Building checked tensor operations: NumPy broadcasting with literal
//! promotion, matrix products, reductions, reshapes, permutations and
//! slicing. Each helper checks its operands first and reports a diagnostic
//! that names both shapes and the offending dimension, then emits IR that
//! the typing rules accept.

use kiln_ir::{DType, Dim, ElementCount, Literal, Op, ReduceKind, Shape, TensorType, UnaryOp};

use super::Checker;
use super::env::Value;
use super::signature::value_dim;
use crate::diag::{Code, Diagnostic};
use crate::source::Span;

/// An operand of an elementwise op: a node, or a literal that takes the
/// dtype and shape the other operands give it.
#[derive(Clone, Copy, Debug)]
pub enum Operand {
    Node(kiln_ir::NodeId),
    Lit(Literal),
}

/// `-1`, `0` and `2` as written, to normalize negative axes.
pub fn normalize_axis(axis: i64, rank: usize) -> Option<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    (0..r).contains(&a).then_some(a as usize)
}

impl Checker<'_> {
    /// An operand of `dtype` from a value: a tensor of that dtype, or a
    /// number that fits it. Reports a dtype mismatch at `span`, with `other`
    /// (where the expected dtype comes from) as a second label.
    pub fn operand(&mut self, v: &Value, dtype: DType, span: Span, other: (Span, String)) -> Option<Operand> {
        let lit = match v {
            Value::Tensor(id) => {
                let ty = self.ty(*id);
                if ty.dtype != dtype {
                    self.error(
                        Diagnostic::new(Code("E0401"), span, format!("dtype mismatch: {} and {dtype}", ty.dtype))
                            .label(format!("this is {ty}"))
                            .also(other.0, other.1)
                            .hint(format!("convert one side with `cast(x, {dtype})`")),
                    );
                    return None;
                }
                return Some(Operand::Node(*id));
            }
            Value::Float(x) if dtype.is_float() => Literal::float(*x),
            Value::Int(i) if dtype.is_float() => Literal::float(*i as f64),
            Value::Int(i) if dtype.is_int() => Literal::Int(*i),
            Value::Bool(b) if dtype == DType::Bool => Literal::Bool(*b),
            Value::Poison => return None,
            Value::Float(_) | Value::Int(_) | Value::Bool(_) => {
                let what = v.describe(|id| self.ty(id));
                self.error(
                    Diagnostic::new(Code("E0401"), span, format!("{what} cannot be used as {dtype}"))
                        .label(format!("not of dtype {dtype}"))
                        .also(other.0, other.1),
                );
                return None;
            }
            other_value => {
                let what = other_value.describe(|id| self.ty(id));
                self.error(
                    Diagnostic::new(Code("E0304"), span, format!("expected a tensor or a number, found {what}"))
                        .label("not a tensor"),
                );
                return None;
            }
        };
        Some(Operand::Lit(lit))
    }

    /// The first tensor among `args` and a label with its type: where an
    /// elementwise op's dtype comes from.
    pub fn anchor(&self, args: &[(Value, Span)], span: Span) -> (Span, String) {
        args.iter()
            .find_map(
                |(v, s)| if let Value::Tensor(id) = v { Some((*s, format!("this is {}", self.ty(*id)))) } else { None },
            )
            .unwrap_or((span, String::new()))
    }

    /// The NumPy broadcast of two shapes, or a diagnostic naming the dimension.
    pub fn broadcast_shape(&mut self, a: &Shape, b: &Shape, spans: (Span, Span), dtype: DType) -> Option<Shape> {
        let rank = a.rank().max(b.rank());
        let mut dims = Vec::with_capacity(rank);
        for i in 0..rank {
            let da = (i + a.rank()).checked_sub(rank).map_or(Dim::Const(1), |j| a.0[j].clone());
            let db = (i + b.rank()).checked_sub(rank).map_or(Dim::Const(1), |j| b.0[j].clone());
            let d = match (&da, &db) {
                (x, y) if x == y => x.clone(),
                (Dim::Const(1), y) => y.clone(),
                (x, Dim::Const(1)) => x.clone(),
                _ => {
                    let (ta, tb) = (TensorType::new(dtype, a.clone()), TensorType::new(dtype, b.clone()));
                    self.error(
                        Diagnostic::new(
                            Code("E0402"),
                            spans.0.to(spans.1),
                            format!("shapes {a} and {b} do not broadcast"),
                        )
                        .label(format!("dimension {i} of the result would need {da} == {db}"))
                        .also(spans.0, format!("this is {ta}"))
                        .also(spans.1, format!("this is {tb}"))
                        .hint("broadcasting aligns trailing dimensions; each pair must be equal or 1"),
                    );
                    return None;
                }
            };
            dims.push(d);
        }
        Some(Shape(dims))
    }

    /// Broadcasts node `id` to `shape` (no node if it already has it).
    pub fn broadcast_to(&mut self, id: kiln_ir::NodeId, shape: &Shape, span: Span) -> Option<kiln_ir::NodeId> {
        if &self.ty(id).shape == shape {
            return Some(id);
        }
        match self.emit(Op::Broadcast { shape: shape.clone() }, &[id], span) {
            Value::Tensor(b) => Some(b),
            _ => None,
        }
    }

    /// Brings operands to one shape: nodes are broadcast, literals become
    /// constants of `dtypes[i]` with the common shape.
    pub fn broadcast_all(
        &mut self,
        operands: &[(Operand, Span)],
        dtypes: &[DType],
        span: Span,
    ) -> Option<Vec<kiln_ir::NodeId>> {
        let mut shape = Shape::scalar();
        let mut shape_span: Option<Span> = None;
        for (op, s) in operands {
            if let Operand::Node(id) = op {
                let ty = self.ty(*id);
                shape = match shape_span {
                    None => ty.shape.clone(),
                    Some(prev) => self.broadcast_shape(&shape, &ty.shape, (prev, *s), ty.dtype)?,
                };
                shape_span = Some(shape_span.map_or(*s, |p| p.to(*s)));
            }
        }
        let mut out = Vec::with_capacity(operands.len());
        for ((op, _), &dtype) in operands.iter().zip(dtypes) {
            let id = match op {
                Operand::Node(id) => self.broadcast_to(*id, &shape, span)?,
                Operand::Lit(value) => {
                    match self.emit(Op::Constant { value: *value, dtype, shape: shape.clone() }, &[], span) {
                        Value::Tensor(id) => id,
                        _ => return None,
                    }
                }
            };
            out.push(id);
        }
        Some(out)
    }

    /// The dtype shared by the tensor operands, or `None` if none is a tensor.
    pub fn tensor_dtype(&self, values: &[&Value]) -> Option<DType> {
        values.iter().find_map(|v| if let Value::Tensor(id) = v { Some(self.ty(*id).dtype) } else { None })
    }

    /// An elementwise op over operands that broadcast, with literal promotion.
    pub fn elementwise(
        &mut self,
        op: Op,
        args: &[(Value, Span)],
        span: Span,
        accepts: impl Fn(DType) -> bool,
        what: &str,
    ) -> Value {
        if args.iter().any(|(v, _)| matches!(v, Value::Poison)) {
            return Value::Poison;
        }
        let values: Vec<&Value> = args.iter().map(|(v, _)| v).collect();
        let Some(dtype) = self.tensor_dtype(&values) else {
            return self.error(
                Diagnostic::new(Code("E0304"), span, format!("{what} needs a tensor operand")).label("no tensor here"),
            );
        };
        if !accepts(dtype) {
            let first = args.iter().find(|(v, _)| matches!(v, Value::Tensor(_))).map_or(span, |a| a.1);
            return self.error(
                Diagnostic::new(Code("E0401"), first, format!("{what} is not defined on {dtype}"))
                    .label(format!("this is {dtype}"))
                    .hint("convert with `cast(x, f32)`"),
            );
        }
        let anchor = self.anchor(args, span);
        let mut operands = Vec::new();
        for (v, s) in args {
            let Some(o) = self.operand(v, dtype, *s, anchor.clone()) else { return Value::Poison };
            operands.push((o, *s));
        }
        let dtypes = vec![dtype; operands.len()];
        let Some(ids) = self.broadcast_all(&operands, &dtypes, span) else { return Value::Poison };
        self.emit(op, &ids, span)
    }

    /// `a @ b` with NumPy's rules: 1-D operands gain and lose an axis, batch
    /// dimensions broadcast.
    pub fn matmul(&mut self, a: (Value, Span), b: (Value, Span), span: Span) -> Value {
        let (Value::Tensor(x), Value::Tensor(y)) = (&a.0, &b.0) else {
            if matches!(a.0, Value::Poison) || matches!(b.0, Value::Poison) {
                return Value::Poison;
            }
            return self.error(
                Diagnostic::new(Code("E0304"), span, "`@` needs two tensors").label("matrix product of non-tensors"),
            );
        };
        let (tx, ty) = (self.ty(*x), self.ty(*y));
        if tx.dtype != ty.dtype || !tx.dtype.is_numeric() {
            return self.error(
                Diagnostic::new(
                    Code("E0401"),
                    span,
                    format!("`@` needs two numeric tensors of one dtype, got {tx} and {ty}"),
                )
                .also(a.1, format!("this is {tx}"))
                .also(b.1, format!("this is {ty}")),
            );
        }
        if tx.rank() == 0 || ty.rank() == 0 {
            return self.error(
                Diagnostic::new(Code("E0403"), span, "`@` needs operands of rank at least 1; use `*` for scalars")
                    .label("scalar operand"),
            );
        }
        let mut xs = tx.shape.clone();
        let mut ys = ty.shape.clone();
        let (squeeze_m, squeeze_n) = (tx.rank() == 1, ty.rank() == 1);
        if squeeze_m {
            xs.0.insert(0, Dim::Const(1));
        }
        if squeeze_n {
            ys.0.push(Dim::Const(1));
        }
        let (k1, k2) = (xs.0[xs.rank() - 1].clone(), ys.0[ys.rank() - 2].clone());
        if k1 != k2 {
            return self.error(
                Diagnostic::new(
                    Code("E0403"),
                    span,
                    format!("matrix product of {tx} and {ty}: the inner dimensions {k1} and {k2} differ"),
                )
                .label("inner dimensions must be equal")
                .also(a.1, format!("this is {tx}, with {k1} columns"))
                .also(b.1, format!("this is {ty}, with {k2} rows")),
            );
        }
        let batch_x = Shape(xs.0[..xs.rank() - 2].to_vec());
        let batch_y = Shape(ys.0[..ys.rank() - 2].to_vec());
        let Some(batch) = self.broadcast_shape(&batch_x, &batch_y, (a.1, b.1), tx.dtype) else { return Value::Poison };
        let full = |batch: &Shape, tail: &[Dim]| Shape(batch.0.iter().chain(tail).cloned().collect());
        let Some(x2) = self.reshape_node(*x, xs.clone(), span) else { return Value::Poison };
        let Some(y2) = self.reshape_node(*y, ys.clone(), span) else { return Value::Poison };
        let Some(x3) = self.broadcast_to(x2, &full(&batch, &xs.0[xs.rank() - 2..]), span) else { return Value::Poison };
        let Some(y3) = self.broadcast_to(y2, &full(&batch, &ys.0[ys.rank() - 2..]), span) else { return Value::Poison };
        let Value::Tensor(product) = self.emit(Op::MatMul, &[x3, y3], span) else { return Value::Poison };
        let mut out = self.ty(product).shape;
        if squeeze_n {
            out.0.pop();
        }
        if squeeze_m {
            let at = out.rank() - if squeeze_n { 1 } else { 2 };
            out.0.remove(at);
        }
        self.reshape_node(product, out, span).map_or(Value::Poison, Value::Tensor)
    }

    /// Reshapes a node (no node if the shape is unchanged).
    pub fn reshape_node(&mut self, id: kiln_ir::NodeId, shape: Shape, span: Span) -> Option<kiln_ir::NodeId> {
        if self.ty(id).shape == shape {
            return Some(id);
        }
        match self.emit(Op::Reshape { shape }, &[id], span) {
            Value::Tensor(r) => Some(r),
            _ => None,
        }
    }

    /// Axes as written (an integer or a list, negatives from the end) to
    /// sorted, unique, in-range axes of a tensor of type `ty`.
    pub fn axes(&mut self, v: &Value, ty: &TensorType, span: Span) -> Option<Vec<usize>> {
        let raw: Vec<i64> = match v {
            Value::Int(i) => vec![*i],
            Value::List(items) if items.iter().all(|i| matches!(i, Value::Int(_))) => {
                items.iter().map(|i| if let Value::Int(i) = i { *i } else { 0 }).collect()
            }
            Value::Poison => return None,
            other => {
                let what = other.describe(|id| self.ty(id));
                self.error(
                    Diagnostic::new(
                        Code("E0404"),
                        span,
                        format!("an axis must be an integer or a list of integers, not {what}"),
                    )
                    .label("not an axis"),
                );
                return None;
            }
        };
        let mut axes = Vec::new();
        for a in raw {
            let Some(n) = normalize_axis(a, ty.rank()) else {
                self.error(Diagnostic::new(Code("E0404"), span, format!("axis {a} is out of range for {ty}")).label(
                    format!(
                        "a tensor of rank {} has axes {} to {}",
                        ty.rank(),
                        -(ty.rank() as i64),
                        ty.rank() as i64 - 1
                    ),
                ));
                return None;
            };
            if axes.contains(&n) {
                self.error(
                    Diagnostic::new(Code("E0404"), span, format!("axis {a} is given twice")).label("repeated axis"),
                );
                return None;
            }
            axes.push(n);
        }
        axes.sort_unstable();
        Some(axes)
    }

    /// `sum`, `max` or `mean` over `axes` (all when `None`).
    pub fn reduce(
        &mut self,
        kind: ReduceKind,
        mean: bool,
        x: kiln_ir::NodeId,
        axes: Option<(Value, Span)>,
        keepdims: bool,
        span: Span,
    ) -> Value {
        let ty = self.ty(x);
        if !ty.dtype.is_numeric() || (mean && !ty.dtype.is_float()) {
            return self.error(
                Diagnostic::new(Code("E0401"), span, format!("cannot reduce {ty}"))
                    .label(format!("this is {ty}"))
                    .hint("reductions need numbers (and `mean` floats): use `cast`"),
            );
        }
        let axes = match axes {
            Some((v, s)) => match self.axes(&v, &ty, s) {
                Some(a) => a,
                None => return Value::Poison,
            },
            None => (0..ty.rank()).collect(),
        };
        let Value::Tensor(r) = self.emit(Op::Reduce { kind, axes: axes.clone(), keepdims }, &[x], span) else {
            return Value::Poison;
        };
        if !mean {
            return Value::Tensor(r);
        }
        let reduced = Shape(axes.iter().map(|&a| ty.shape.0[a].clone()).collect());
        let Some(count) = self.element_count(&reduced, ty.dtype, span) else { return Value::Poison };
        self.elementwise(
            Op::Binary(kiln_ir::BinaryOp::Div),
            &[(Value::Tensor(r), span), (count, span)],
            span,
            |d| d.is_float(),
            "`mean`",
        )
    }

    /// The number of elements of `shape` as a value: a number when every
    /// dimension is constant, else a scalar tensor computed from the symbols.
    pub fn element_count(&mut self, shape: &Shape, dtype: DType, span: Span) -> Option<Value> {
        let ElementCount { constant, symbols } = shape.element_count();
        let mut value: Option<Value> = None;
        for s in symbols {
            let Value::Tensor(d) = self.emit(Op::DimValue { symbol: s }, &[], span) else { return None };
            let Value::Tensor(d) = self.emit(Op::Cast { to: dtype }, &[d], span) else { return None };
            value = Some(match value {
                None => Value::Tensor(d),
                Some(v) => self.elementwise(
                    Op::Binary(kiln_ir::BinaryOp::Mul),
                    &[(v, span), (Value::Tensor(d), span)],
                    span,
                    |_| true,
                    "`*`",
                ),
            });
        }
        Some(match value {
            None => Value::Float(constant as f64),
            Some(v) if constant == 1 => v,
            Some(v) => self.elementwise(
                Op::Binary(kiln_ir::BinaryOp::Mul),
                &[(v, span), (Value::Float(constant as f64), span)],
                span,
                |_| true,
                "`*`",
            ),
        })
    }

    /// `reshape(x, [d0, d1, ...])`, where one entry may be -1.
    pub fn reshape(&mut self, x: kiln_ir::NodeId, dims: &[(Value, Span)], span: Span) -> Value {
        let ty = self.ty(x);
        let mut shape = Vec::new();
        let mut infer_at = None;
        for (i, (v, s)) in dims.iter().enumerate() {
            match v {
                Value::Int(-1) if infer_at.is_none() => {
                    infer_at = Some(i);
                    shape.push(Dim::Const(1));
                }
                Value::Poison => return Value::Poison,
                other => match value_dim(other) {
                    Some(d) => shape.push(d),
                    None => {
                        let what = other.describe(|id| self.ty(id));
                        return self.error(
                            Diagnostic::new(
                                Code("E0405"),
                                *s,
                                format!("a reshape dimension must be a size, a symbol or one -1, not {what}"),
                            )
                            .label("not a dimension"),
                        );
                    }
                },
            }
        }
        let total = ty.shape.element_count();
        if let Some(at) = infer_at {
            let known = Shape(shape.clone()).element_count();
            let mut rest = total.symbols.clone();
            let mut ok = known.constant != 0 && total.constant.is_multiple_of(known.constant);
            for s in &known.symbols {
                match rest.iter().position(|r| r == s) {
                    Some(p) => {
                        rest.remove(p);
                    }
                    None => ok = false,
                }
            }
            let quotient = total.constant.checked_div(known.constant).unwrap_or(0);
            shape[at] = match (ok, rest.as_slice()) {
                (true, []) => Dim::Const(quotient as u64),
                (true, [s]) if quotient == 1 => Dim::Sym(s.clone()),
                _ => {
                    return self.error(
                        Diagnostic::new(
                            Code("E0405"),
                            span,
                            format!("cannot infer the -1 dimension when reshaping {ty}"),
                        )
                        .label(format!("{total} elements do not divide into the other dimensions' {known}")),
                    );
                }
            };
        }
        let target = Shape(shape);
        if target.element_count() != total {
            return self.error(
                Diagnostic::new(Code("E0405"), span, format!("cannot reshape {ty} to {target}"))
                    .label(format!("{} elements cannot become {}", total, target.element_count()))
                    .hint("a reshape keeps the number of elements"),
            );
        }
        self.reshape_node(x, target, span).map_or(Value::Poison, Value::Tensor)
    }

    /// Slices one axis: elements `start, start+step, ... < stop`.
    pub fn slice_axis(
        &mut self,
        x: kiln_ir::NodeId,
        axis: usize,
        bounds: (Option<i64>, Option<i64>, i64),
        span: Span,
    ) -> Option<kiln_ir::NodeId> {
        let ty = self.ty(x);
        let (start, stop, step) = bounds;
        let size = match &ty.shape.0[axis] {
            Dim::Const(n) => *n as i64,
            Dim::Sym(s) => {
                if start.is_none() && stop.is_none() && step == 1 {
                    return Some(x);
                }
                self.error(
                    Diagnostic::new(
                        Code("E0408"),
                        span,
                        format!("cannot slice axis {axis} of {ty}: its size {s} is symbolic"),
                    )
                    .label("slice of a symbolic dimension")
                    .hint("only a whole symbolic axis (`:`) can be taken"),
                );
                return None;
            }
        };
        if step <= 0 {
            self.error(
                Diagnostic::new(Code("E0409"), span, format!("a slice step must be positive, not {step}"))
                    .label("bad step"),
            );
            return None;
        }
        let norm = |i: i64| if i < 0 { i + size } else { i };
        let (s, e) = (norm(start.unwrap_or(0)), norm(stop.unwrap_or(size)));
        if s < 0 || e > size || s > e {
            self.error(
                Diagnostic::new(
                    Code("E0409"),
                    span,
                    format!(
                        "slice {}..{} is out of range for axis {axis} of {ty}",
                        start.unwrap_or(0),
                        stop.unwrap_or(size)
                    ),
                )
                .label(format!("axis {axis} has {size} elements")),
            );
            return None;
        }
        if s == 0 && e == size && step == 1 {
            return Some(x);
        }
        match self.emit(Op::Slice { axis, start: s as u64, stop: e as u64, step: step as u64 }, &[x], span) {
            Value::Tensor(id) => Some(id),
            _ => None,
        }
    }

    /// A unary elementwise primitive, or its compile-time value on a number.
    pub fn unary(&mut self, op: UnaryOp, v: Value, name: &str, span: Span) -> Value {
        match v {
            Value::Tensor(id) => {
                let ty = self.ty(id);
                if !op.accepts(ty.dtype) {
                    return self.error(
                        Diagnostic::new(Code("E0401"), span, format!("`{name}` is not defined on {}", ty.dtype))
                            .label(format!("this is {ty}"))
                            .hint("convert with `cast(x, f32)`"),
                    );
                }
                self.emit(Op::Unary(op), &[id], span)
            }
            Value::Float(_) | Value::Int(_) if op != UnaryOp::Not => {
                let x = match v {
                    Value::Float(x) => x,
                    Value::Int(i) => i as f64,
                    _ => 0.0,
                };
                let r = match op {
                    UnaryOp::Neg => -x,
                    UnaryOp::Abs => x.abs(),
                    UnaryOp::Sign => x.signum(),
                    UnaryOp::Exp => x.exp(),
                    UnaryOp::Log => x.ln(),
                    UnaryOp::Sqrt => x.sqrt(),
                    UnaryOp::Recip => 1.0 / x,
                    UnaryOp::Sin => x.sin(),
                    UnaryOp::Cos => x.cos(),
                    UnaryOp::Tanh => x.tanh(),
                    UnaryOp::Floor => x.floor(),
                    UnaryOp::Not => x,
                };
                match (v, op) {
                    (Value::Int(i), UnaryOp::Neg) => Value::Int(i.wrapping_neg()),
                    (Value::Int(i), UnaryOp::Abs) => Value::Int(i.wrapping_abs()),
                    _ => Value::Float(r),
                }
            }
            Value::Bool(b) if op == UnaryOp::Not => Value::Bool(!b),
            Value::Poison => Value::Poison,
            other => {
                let what = other.describe(|id| self.ty(id));
                self.error(
                    Diagnostic::new(Code("E0304"), span, format!("`{name}` cannot be applied to {what}"))
                        .label("wrong kind of value"),
                )
            }
        }
    }
}
