//! Type annotations: matching `f32[..., C]` against actual tensor types
//! (binding `C` and `...`), turning an entry function's annotations into IR
//! input types with symbolic dimensions, and checking compile-time arguments.

use kiln_ir::{DType, Dim, Literal, Op, Shape, Symbol, TensorType};

use super::Checker;
use super::env::{Env, MemberValue, Value};
use crate::ast::{DimExpr, Expr, ExprKind, FnDecl, FnParam, Ident, ParamType, ScalarKind, TypeExpr};
use crate::diag::{Code, Diagnostic};
use crate::source::Span;

/// What one dimension of an annotation says.
enum DimPattern {
    /// An unbound upper-case name: binds to whatever the actual dimension is.
    Bind(String),
    /// A known dimension the actual one must equal.
    Known(Dim),
    /// The dimension expression had an error (already reported).
    Error,
}

impl Checker<'_> {
    /// The dtype an annotation names.
    pub fn dtype_name(&mut self, name: &Ident) -> Option<DType> {
        let found = DType::from_name(&name.name);
        if found.is_none() {
            self.error(
                Diagnostic::new(Code("E0201"), name.span, format!("unknown dtype `{}`", name.name))
                    .label("not a dtype")
                    .hint("the dtypes are f32, f64, i32, i64 and bool"),
            );
        }
        found
    }

    fn dim_pattern(&mut self, e: &Expr, env: &mut Env) -> DimPattern {
        if let ExprKind::Name(n) = &e.kind {
            let bound = env.get(n).is_some() || self.instance_arg(env, n).is_some();
            if !bound && n.starts_with(|c: char| c.is_ascii_uppercase()) {
                return DimPattern::Bind(n.clone());
            }
        }
        match self.eval(e, env) {
            Value::Int(i) if i >= 0 => DimPattern::Known(Dim::Const(i as u64)),
            Value::Dim(s) => DimPattern::Known(Dim::Sym(s)),
            Value::Poison => DimPattern::Error,
            other => {
                let what = other.describe(|id| self.ty(id));
                self.error(
                    Diagnostic::new(
                        Code("E0408"),
                        e.span,
                        format!("a dimension must be a non-negative integer, not {what}"),
                    )
                    .label("not a dimension"),
                );
                DimPattern::Error
            }
        }
    }

    /// A compile-time argument of the model whose function is being lowered.
    pub fn instance_arg(&self, env: &Env, name: &str) -> Option<Value> {
        match self.instances.get(env.instance?)?.members.get(name)? {
            MemberValue::Arg(v) => Some(v.clone()),
            _ => None,
        }
    }

    /// A parameter's type: every dimension a constant.
    pub fn static_type(&mut self, t: &TypeExpr, env: &mut Env) -> Option<TensorType> {
        let dtype = self.dtype_name(&t.dtype)?;
        let mut dims = Vec::new();
        for d in &t.dims {
            let DimExpr::Expr(e) = d else {
                self.error(
                    Diagnostic::new(Code("E0502"), t.span, "a parameter's shape must be fully known")
                        .label("`...` is not allowed here"),
                );
                return None;
            };
            if let ExprKind::Name(n) = &e.kind
                && env.get(n).is_none()
                && self.instance_arg(env, n).is_none()
                && n.starts_with(|c: char| c.is_ascii_uppercase())
            {
                self.error(
                    Diagnostic::new(
                        Code("E0502"),
                        e.span,
                        format!("a parameter's shape must be constant, but `{n}` is a symbolic dimension"),
                    )
                    .label("symbolic here")
                    .hint("parameters are allocated when the model is built; use the model's integer arguments"),
                );
                return None;
            }
            match self.eval(e, env) {
                Value::Int(i) if i >= 0 => dims.push(Dim::Const(i as u64)),
                Value::Poison => return None,
                other => {
                    let what = other.describe(|id| self.ty(id));
                    self.error(
                        Diagnostic::new(
                            Code("E0502"),
                            e.span,
                            format!("a parameter's dimensions must be constant integers, not {what}"),
                        )
                        .label("not a constant size")
                        .hint("use the model's integer arguments, like `f32[inputs, outputs]`"),
                    );
                    return None;
                }
            }
        }
        Some(TensorType::new(dtype, Shape(dims)))
    }

    /// An entry function's input type: unbound upper-case names become
    /// symbolic dimensions, bound in `env` for the body.
    pub fn entry_type(&mut self, t: &TypeExpr, env: &mut Env) -> Option<TensorType> {
        let dtype = self.dtype_name(&t.dtype)?;
        let mut dims = Vec::new();
        for d in &t.dims {
            let DimExpr::Expr(e) = d else { return None };
            match self.dim_pattern(e, env) {
                DimPattern::Bind(name) => {
                    env.bind(&name, Value::Dim(Symbol::new(name.clone())), e.span);
                    dims.push(Dim::Sym(Symbol::new(name)));
                }
                DimPattern::Known(d) => dims.push(d),
                DimPattern::Error => return None,
            }
        }
        let ty = TensorType::new(dtype, Shape(dims));
        if let Some(why) = ty.too_large() {
            self.error(
                Diagnostic::new(Code("E0418"), t.span, format!("this input is too large: {why}"))
                    .label("declared here"),
            );
            return None;
        }
        Some(ty)
    }

    /// Checks `ty` against the annotation `pat`, binding its names in `env`.
    /// On a mismatch it reports `code` at `span` (the value) and returns false.
    pub fn match_type(
        &mut self,
        pat: &TypeExpr,
        ty: &TensorType,
        env: &mut Env,
        what: &str,
        span: Span,
        code: &'static str,
    ) -> bool {
        let Some(dtype) = self.dtype_name(&pat.dtype) else { return false };
        let expected = self.sources.snippet(pat.span).to_string();
        let mismatch = |c: &mut Self, detail: String| {
            c.error(
                Diagnostic::new(Code(code), span, format!("{what} must be {expected}, but it is {ty}"))
                    .label(format!("this is {ty}"))
                    .also(pat.span, "expected because of this annotation")
                    .note(detail),
            );
            false
        };
        if dtype != ty.dtype {
            return mismatch(self, format!("the dtype is {}, expected {dtype}", ty.dtype));
        }
        let ellipses: Vec<usize> =
            pat.dims.iter().enumerate().filter(|(_, d)| matches!(d, DimExpr::Ellipsis(_))).map(|(i, _)| i).collect();
        if ellipses.len() > 1 {
            self.error(
                Diagnostic::new(Code("E0406"), pat.span, "a type may contain at most one `...`")
                    .label("more than one `...`"),
            );
            return false;
        }
        let fixed = pat.dims.len() - ellipses.len();
        let rank_ok = if ellipses.is_empty() { ty.rank() == fixed } else { ty.rank() >= fixed };
        if !rank_ok {
            let need = if ellipses.is_empty() { format!("{fixed}") } else { format!("at least {fixed}") };
            return mismatch(self, format!("the rank is {}, expected {need}", ty.rank()));
        }
        let extra = ty.rank() - fixed;
        let mut axis = 0;
        for d in &pat.dims {
            match d {
                DimExpr::Ellipsis(_) => {
                    let covered: Vec<Value> = ty.shape.0[axis..axis + extra].iter().map(dim_value).collect();
                    match &env.ellipsis {
                        Some(previous) if !same_dims(previous, &covered) => {
                            let show = |v: &[Value]| Shape(v.iter().filter_map(value_dim).collect()).to_string();
                            return mismatch(
                                self,
                                format!(
                                    "`...` stands for {} here but for {} earlier in the signature",
                                    show(&covered),
                                    show(previous)
                                ),
                            );
                        }
                        _ => env.ellipsis = Some(covered),
                    }
                    axis += extra;
                }
                DimExpr::Expr(e) => {
                    let actual = &ty.shape.0[axis];
                    match self.dim_pattern(e, env) {
                        DimPattern::Bind(name) => env.bind(&name, dim_value(actual), e.span),
                        DimPattern::Known(d) if &d != actual => {
                            return mismatch(self, format!("dimension {axis} is {actual}, expected {d}"));
                        }
                        DimPattern::Known(_) => {}
                        DimPattern::Error => return false,
                    }
                    axis += 1;
                }
            }
        }
        true
    }

    /// Checks a compile-time argument against its declared kind.
    pub fn check_scalar_param(&mut self, p: &FnParam, value: Value, span: Span) -> Option<Value> {
        let kind = match &p.ty {
            ParamType::Scalar(kind, _) => *kind,
            ParamType::Tensor(t) => {
                self.error(
                    Diagnostic::new(Code("E0304"), t.span, "model arguments are compile-time numbers, not tensors")
                        .label("declare it as `int`, `float` or `bool`"),
                );
                return None;
            }
        };
        match (kind, value) {
            (_, Value::Poison) => None,
            (ScalarKind::Int, v @ Value::Int(_))
            | (ScalarKind::Bool, v @ Value::Bool(_))
            | (ScalarKind::Float, v @ Value::Float(_)) => Some(v),
            (ScalarKind::Float, Value::Int(i)) => Some(Value::Float(i as f64)),
            (kind, other) => {
                let what = other.describe(|id| self.ty(id));
                let hint = if matches!(other, Value::Dim(_)) {
                    "a symbolic dimension is only known when the function runs"
                } else {
                    ""
                };
                self.error(
                    Diagnostic::new(
                        Code("E0304"),
                        span,
                        format!("`{}` must be a compile-time {}, not {what}", p.name.name, kind.name()),
                    )
                    .label(format!("expected {}", kind.name()))
                    .also(p.name.span, "declared here")
                    .hint(hint),
                );
                None
            }
        }
    }

    /// Checks a function's result against its return annotation; a number
    /// returned where a scalar tensor is declared becomes a constant.
    pub fn check_result(&mut self, decl: &FnDecl, value: Value, env: &mut Env) -> Value {
        let span = decl.body.value.as_ref().map_or(decl.body.span, |v| v.span);
        let what = format!("the result of `{}`", decl.name.name);
        match (&decl.ret, value) {
            (_, Value::Poison) => Value::Poison,
            (Some(pat), Value::Tensor(id)) => {
                let ty = self.ty(id);
                if self.match_type(pat, &ty, env, &what, span, "E0407") { Value::Tensor(id) } else { Value::Poison }
            }
            (Some(pat), v @ (Value::Float(_) | Value::Int(_) | Value::Bool(_))) if pat.dims.is_empty() => {
                let Some(dtype) = self.dtype_name(&pat.dtype) else { return Value::Poison };
                let literal = match v {
                    Value::Float(x) if dtype.is_float() => Literal::float(x),
                    Value::Int(i) if dtype.is_float() => Literal::float(i as f64),
                    Value::Int(i) if dtype.is_int() => Literal::Int(i),
                    Value::Bool(b) if dtype == DType::Bool => Literal::Bool(b),
                    _ => return self.result_not_tensor(decl, &v, span),
                };
                self.emit(Op::Constant { value: literal, dtype, shape: Shape::scalar() }, &[], span)
            }
            (None, v @ Value::Tensor(_)) => v,
            // A function with no annotation may compute a compile-time value
            // (a size, a list) for its caller; an entry function may not.
            (None, v @ (Value::Int(_) | Value::Float(_) | Value::Bool(_) | Value::List(_)))
                if decl.body.value.is_some() =>
            {
                v
            }
            (_, v) => self.result_not_tensor(decl, &v, span),
        }
    }

    pub fn result_not_tensor(&mut self, decl: &FnDecl, v: &Value, span: Span) -> Value {
        let what = v.describe(|id| self.ty(id));
        let message = if decl.body.value.is_none() {
            format!("`{}` does not return a value", decl.name.name)
        } else {
            format!("`{}` must return a tensor or a list of tensors, not {what}", decl.name.name)
        };
        self.error(
            Diagnostic::new(Code("E0407"), span, message)
                .label("the function's result")
                .also(decl.name.span, "in this function"),
        )
    }
}

/// A dimension as a value: a constant is an integer, a symbol stays symbolic.
pub fn dim_value(d: &Dim) -> Value {
    match d {
        Dim::Const(n) => Value::Int(*n as i64),
        Dim::Sym(s) => Value::Dim(s.clone()),
    }
}

/// A value as a dimension, if it is one.
pub fn value_dim(v: &Value) -> Option<Dim> {
    match v {
        Value::Int(i) if *i >= 0 => Some(Dim::Const(*i as u64)),
        Value::Dim(s) => Some(Dim::Sym(s.clone())),
        _ => None,
    }
}

fn same_dims(a: &[Value], b: &[Value]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| value_dim(x) == value_dim(y))
}
