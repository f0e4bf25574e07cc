//! Evaluating expressions, statements and calls. Compile-time values are
//! computed here; tensor operations go to the builders in `tensor.rs`; calls
//! of kiln functions are inlined, with their arguments checked against the
//! callee's annotations.

use std::rc::Rc;

use kiln_ir::{BinaryOp as IrBinary, CompareOp, Op, UnaryOp as IrUnary};

use super::Checker;
use super::env::{Callable, Env, MemberValue, Value};
use super::tensor::normalize_axis;
use crate::ast::{Arg, BinaryOp, Block, Expr, ExprKind, FnDecl, FnParam, ForIter, IndexItem, ParamType, Stmt, UnaryOp};
use crate::diag::{Code, Diagnostic};
use crate::source::Span;

/// A call's arguments after evaluation.
pub struct ActualArg {
    pub name: Option<crate::ast::Ident>,
    pub value: Value,
    pub span: Span,
}

/// Inlined calls deeper than this are reported as runaway recursion.
const MAX_CALL_DEPTH: usize = 64;
/// Static loops longer than this are reported rather than unrolled.
const MAX_UNROLL: i64 = 4096;

impl Checker<'_> {
    pub fn eval(&mut self, e: &Expr, env: &mut Env) -> Value {
        match &e.kind {
            ExprKind::Int(i) => Value::Int(*i),
            ExprKind::Float(x) => Value::Float(*x),
            ExprKind::Bool(b) => Value::Bool(*b),
            ExprKind::Error => Value::Poison,
            ExprKind::Name(n) => self.lookup(n, e.span, env),
            ExprKind::List(items) => Value::List(items.iter().map(|i| self.eval(i, env)).collect()),
            ExprKind::Comprehension(item, var, iter) => {
                let Some(values) = self.for_values(iter, env) else { return Value::Poison };
                let mut items = Vec::with_capacity(values.len());
                for v in values {
                    env.push();
                    env.bind(&var.name, v, var.span);
                    items.push(self.eval(item, env));
                    env.pop();
                }
                Value::List(items)
            }
            ExprKind::Unary(op, x) => {
                let v = self.eval(x, env);
                match op {
                    UnaryOp::Neg => self.unary(IrUnary::Neg, v, "-", e.span),
                    UnaryOp::Not => self.unary(IrUnary::Not, v, "!", e.span),
                }
            }
            ExprKind::Binary(op, a, b) => {
                let va = self.eval(a, env);
                let vb = self.eval(b, env);
                self.binary(*op, (va, a.span), (vb, b.span), e.span)
            }
            ExprKind::Call(f, args) => {
                let callee = self.eval(f, env);
                let Some(actual) = self.eval_args(args, env) else { return Value::Poison };
                self.call(callee, actual, f.span, e.span)
            }
            ExprKind::Index(x, items) => {
                let v = self.eval(x, env);
                self.index(v, items, env, e.span)
            }
            ExprKind::Field(x, field) => match self.eval(x, env) {
                Value::Model(inst) => self.member(inst, &field.name, field.span).unwrap_or_else(|| {
                    let model = self.instances[inst].decl.name.name.clone();
                    let members: Vec<String> = self.instances[inst].members.keys().cloned().collect();
                    let hint = closest(&field.name, &members).map(|m| format!("did you mean `{m}`?"));
                    self.error(
                        Diagnostic::new(
                            Code("E0201"),
                            field.span,
                            format!("model `{model}` has no member `{}`", field.name),
                        )
                        .label("unknown member")
                        .hint(hint.unwrap_or_else(|| format!("its members are: {}", sorted(&members)))),
                    )
                }),
                Value::Poison => Value::Poison,
                other => {
                    let what = other.describe(|id| self.ty(id));
                    self.error(
                        Diagnostic::new(Code("E0201"), field.span, format!("{what} has no members"))
                            .label("`.` needs a model on its left"),
                    )
                }
            },
            ExprKind::If(cond, then, otherwise) => match self.condition(cond, env) {
                Some(true) => self.eval_block(then, env),
                Some(false) => self.eval_block(otherwise, env),
                None => Value::Poison,
            },
            ExprKind::Block(b) => self.eval_block(b, env),
        }
    }

    /// An `if`'s condition: a compile-time boolean, or `None` after an error.
    pub fn condition(&mut self, cond: &Expr, env: &mut Env) -> Option<bool> {
        match self.eval(cond, env) {
            Value::Bool(b) => Some(b),
            Value::Poison => None,
            other => {
                let what = other.describe(|id| self.ty(id));
                self.error(
                    Diagnostic::new(Code("E0411"), cond.span, format!("`if` needs a compile-time boolean, not {what}"))
                        .label("not known at compile time")
                        .hint("to choose between tensors elementwise, use `where(condition, a, b)`"),
                );
                None
            }
        }
    }

    pub fn eval_args(&mut self, args: &[Arg], env: &mut Env) -> Option<Vec<ActualArg>> {
        let actual: Vec<ActualArg> = args
            .iter()
            .map(|a| ActualArg { name: a.name.clone(), value: self.eval(&a.value, env), span: a.value.span })
            .collect();
        Some(actual)
    }

    pub fn eval_block(&mut self, block: &Block, env: &mut Env) -> Value {
        env.push();
        for s in &block.stmts {
            self.stmt(s, env);
        }
        let value = match &block.value {
            Some(v) => self.eval(v, env),
            None => Value::List(Vec::new()),
        };
        env.pop();
        value
    }

    fn stmt(&mut self, s: &Stmt, env: &mut Env) {
        match s {
            Stmt::Let { name, ty, value, .. } => {
                let mut v = self.eval(value, env);
                if let (Some(pat), Value::Tensor(id)) = (ty, &v) {
                    let t = self.ty(*id);
                    if !self.match_type(pat, &t, env, &format!("`{}`", name.name), value.span, "E0406") {
                        v = Value::Poison;
                    }
                }
                env.bind(&name.name, v, name.span);
            }
            Stmt::Assign { name, value, .. } => {
                let v = self.eval(value, env);
                let Some(old) = env.get(&name.name).cloned() else {
                    self.assign_state(name, v, value.span, env);
                    return;
                };
                if let (Value::Tensor(a), Value::Tensor(b)) = (&old.value, &v) {
                    let (ta, tb) = (self.ty(*a), self.ty(*b));
                    if ta.dtype != tb.dtype {
                        self.error(
                            Diagnostic::new(
                                Code("E0417"),
                                value.span,
                                format!("`{}` is {ta}, but the new value is {tb}", name.name),
                            )
                            .label(format!("this is {tb}"))
                            .also(old.span, "declared here")
                            .hint("a variable keeps its dtype (its shape may change); use `let` to declare a new one"),
                        );
                        env.assign(&name.name, Value::Poison);
                        return;
                    }
                }
                env.assign(&name.name, v);
            }
            Stmt::For { var, iter, body, .. } => {
                let Some(values) = self.for_values(iter, env) else { return };
                for v in values {
                    env.push();
                    env.bind(&var.name, v, var.span);
                    let v = self.eval_block(body, env);
                    env.pop();
                    if matches!(v, Value::Poison) && self.diags.len() > 100 {
                        return;
                    }
                }
            }
            Stmt::Expr(e) => {
                self.eval(e, env);
            }
        }
    }

    /// The values a `for` (or a comprehension) runs over: the integers of a
    /// compile-time range, or the items of a compile-time list.
    pub fn for_values(&mut self, iter: &ForIter, env: &mut Env) -> Option<Vec<Value>> {
        let (start, end) = match iter {
            ForIter::Range(start, end) => (start, end),
            ForIter::Each(list) => {
                return match self.eval(list, env) {
                    Value::List(items) => Some(items),
                    Value::Poison => None,
                    other => {
                        let what = other.describe(|id| self.ty(id));
                        self.error(
                            Diagnostic::new(
                                Code("E0411"),
                                list.span,
                                format!("a `for` runs over a range `a..b` or a compile-time list, not {what}"),
                            )
                            .label("not a range or a list")
                            .hint("loops are unrolled when the model is compiled"),
                        );
                        None
                    }
                };
            }
        };
        let (from, to) = match (self.eval(start, env), self.eval(end, env)) {
            (Value::Int(a), Value::Int(b)) => (a, b),
            (Value::Poison, _) | (_, Value::Poison) => return None,
            (a, b) => {
                let what = if matches!(a, Value::Int(_)) { b } else { a };
                let what = what.describe(|id| self.ty(id));
                self.error(
                    Diagnostic::new(
                        Code("E0411"),
                        iter.span(),
                        format!("a `for` range needs compile-time integers, not {what}"),
                    )
                    .label("not a constant range")
                    .hint("loops are unrolled when the model is compiled"),
                );
                return None;
            }
        };
        if to.saturating_sub(from) > MAX_UNROLL {
            self.error(
                Diagnostic::new(
                    Code("E0416"),
                    iter.span(),
                    format!("this loop runs {} times; kiln unrolls at most {MAX_UNROLL}", to.saturating_sub(from)),
                )
                .label("too many iterations"),
            );
            return None;
        }
        Some((from..to).map(Value::Int).collect())
    }

    /// `name = value` where `name` is no variable: a `state` member of the
    /// current model gets a new value of its declared type, which the rest
    /// of the function reads and the training step returns.
    fn assign_state(&mut self, name: &crate::ast::Ident, v: Value, span: Span, env: &Env) {
        let member = env.instance.and_then(|inst| self.instances[inst].members.get(&name.name).cloned());
        let qualified = match member {
            Some(MemberValue::Param(q)) if self.states.contains(&q) => q,
            Some(MemberValue::Param(_)) => {
                self.error(
                    Diagnostic::new(
                        Code("E0417"),
                        name.span,
                        format!("`{}` is a trained parameter; only `state` members can be assigned", name.name),
                    )
                    .label("assigned here")
                    .hint("declare it `state` if the model updates it itself, as batch norm's running mean"),
                );
                return;
            }
            _ => {
                self.error(
                    Diagnostic::new(
                        Code("E0201"),
                        name.span,
                        format!("cannot assign to `{}`: no such variable", name.name),
                    )
                    .label("not declared")
                    .hint(format!("declare it first with `let {} = ...`", name.name)),
                );
                return;
            }
        };
        let Value::Tensor(id) = v else {
            if !matches!(v, Value::Poison) {
                let what = v.describe(|id| self.ty(id));
                self.error(
                    Diagnostic::new(Code("E0417"), span, format!("state `{}` takes a tensor, not {what}", name.name))
                        .label("not a tensor"),
                );
            }
            return;
        };
        let declared = self.module.param(&qualified).map(|p| p.ty.clone());
        let got = self.ty(id);
        if declared.as_ref() != Some(&got) {
            let want = declared.map_or_else(|| "?".to_string(), |t| t.to_string());
            self.error(
                Diagnostic::new(
                    Code("E0417"),
                    span,
                    format!("state `{}` is {want}, but the new value is {got}", name.name),
                )
                .label(format!("this is {got}"))
                .hint("state keeps its declared type; reduce or reshape the value to it"),
            );
            return;
        }
        self.param_nodes.insert(qualified.clone(), id);
        match self.state_updates.iter_mut().find(|(q, _)| *q == qualified) {
            Some(entry) => entry.1 = id,
            None => self.state_updates.push((qualified, id)),
        }
    }

    /// What a name means: a local, a member of the current model, a model
    /// argument, a function or model definition, a builtin, a dtype.
    fn lookup(&mut self, name: &str, span: Span, env: &Env) -> Value {
        if let Some(b) = env.get(name) {
            return b.value.clone();
        }
        if let Some(inst) = env.instance
            && let Some(v) = self.member(inst, name, span)
        {
            return v;
        }
        if name == "training" {
            return Value::Bool(self.training);
        }
        if let Some(f) = self.items.fns.get(name) {
            return Value::Callable(Callable::Fn(f.clone()));
        }
        if let Some(m) = self.items.models.get(name) {
            return Value::Callable(Callable::Model(m.clone()));
        }
        if let Some(b) = super::builtins::find(name) {
            return Value::Callable(Callable::Builtin(b));
        }
        if let Some(d) = kiln_ir::DType::from_name(name) {
            return Value::DType(d);
        }
        let mut candidates: Vec<String> = env.names().cloned().collect();
        if let Some(inst) = env.instance {
            candidates.extend(self.instances[inst].members.keys().cloned());
        }
        candidates.extend(self.items.fns.keys().cloned());
        candidates.extend(self.items.models.keys().cloned());
        candidates.extend(super::builtins::NAMES.iter().map(|s| s.to_string()));
        candidates.extend(kiln_ir::DType::ALL.iter().map(|d| d.name().to_string()));
        let mut d = Diagnostic::new(Code("E0201"), span, format!("unknown name `{name}`")).label("not defined here");
        if let Some(best) = closest(name, &candidates) {
            d = d.hint(format!("did you mean `{best}`?"));
        }
        self.error(d)
    }

    /// A member of a model instance, as a value in a function of that model.
    fn member(&mut self, inst: usize, name: &str, span: Span) -> Option<Value> {
        let member = self.instances[inst].members.get(name)?.clone();
        Some(match member {
            MemberValue::Param(qualified) => {
                if let Some(&id) = self.param_nodes.get(&qualified) {
                    return Some(Value::Tensor(id));
                }
                let v = self.emit(Op::Param { name: qualified.clone() }, &[], span);
                if let Value::Tensor(id) = v {
                    self.param_nodes.insert(qualified, id);
                }
                v
            }
            MemberValue::Sub(child) => Value::Model(child),
            MemberValue::Fn(f) => Value::Callable(Callable::Method(inst, f)),
            MemberValue::Arg(v) => v,
        })
    }

    fn binary(&mut self, op: BinaryOp, a: (Value, Span), b: (Value, Span), span: Span) -> Value {
        use Value::{Bool, Float, Int};
        match (&a.0, &b.0) {
            (Value::Poison, _) | (_, Value::Poison) => return Value::Poison,
            (Int(x), Int(y)) => return self.int_binary(op, *x, *y, b.1, span),
            (Int(_) | Float(_), Int(_) | Float(_)) => {
                let (x, y) = (as_f64(&a.0), as_f64(&b.0));
                return match op {
                    BinaryOp::Add => Float(x + y),
                    BinaryOp::Sub => Float(x - y),
                    BinaryOp::Mul => Float(x * y),
                    BinaryOp::Div => Float(x / y),
                    BinaryOp::Rem => Float(x % y),
                    BinaryOp::Pow => Float(x.powf(y)),
                    BinaryOp::Eq => Bool(x == y),
                    BinaryOp::Ne => Bool(x != y),
                    BinaryOp::Lt => Bool(x < y),
                    BinaryOp::Le => Bool(x <= y),
                    BinaryOp::Gt => Bool(x > y),
                    BinaryOp::Ge => Bool(x >= y),
                    BinaryOp::MatMul | BinaryOp::And | BinaryOp::Or => self.bad_operands(op, &a, &b, span),
                };
            }
            (Bool(x), Bool(y)) => {
                return match op {
                    BinaryOp::And => Bool(*x && *y),
                    BinaryOp::Or => Bool(*x || *y),
                    BinaryOp::Eq => Bool(x == y),
                    BinaryOp::Ne => Bool(x != y),
                    _ => self.bad_operands(op, &a, &b, span),
                };
            }
            // Lists join: `outputs = outputs + [h]` collects a loop's values.
            (Value::List(x), Value::List(y)) if op == BinaryOp::Add => {
                return Value::List(x.iter().chain(y).cloned().collect());
            }
            (Value::Tensor(_), _) | (_, Value::Tensor(_)) => {}
            _ => return self.bad_operands(op, &a, &b, span),
        }
        let what = format!("`{}`", op.symbol());
        let args = [a, b];
        let numeric = |d: kiln_ir::DType| d.is_numeric();
        match op {
            BinaryOp::Add => self.elementwise(Op::Binary(IrBinary::Add), &args, span, numeric, &what),
            BinaryOp::Sub => self.elementwise(Op::Binary(IrBinary::Sub), &args, span, numeric, &what),
            BinaryOp::Mul => self.elementwise(Op::Binary(IrBinary::Mul), &args, span, numeric, &what),
            BinaryOp::Div => self.elementwise(Op::Binary(IrBinary::Div), &args, span, numeric, &what),
            BinaryOp::Pow => self.elementwise(Op::Binary(IrBinary::Pow), &args, span, |d| d.is_float(), &what),
            BinaryOp::And => {
                self.elementwise(Op::Binary(IrBinary::And), &args, span, |d| d == kiln_ir::DType::Bool, &what)
            }
            BinaryOp::Or => {
                self.elementwise(Op::Binary(IrBinary::Or), &args, span, |d| d == kiln_ir::DType::Bool, &what)
            }
            BinaryOp::Eq => self.elementwise(Op::Compare(CompareOp::Eq), &args, span, |_| true, &what),
            BinaryOp::Ne => self.elementwise(Op::Compare(CompareOp::Ne), &args, span, |_| true, &what),
            BinaryOp::Lt => self.elementwise(Op::Compare(CompareOp::Lt), &args, span, numeric, &what),
            BinaryOp::Le => self.elementwise(Op::Compare(CompareOp::Le), &args, span, numeric, &what),
            BinaryOp::Gt => self.elementwise(Op::Compare(CompareOp::Gt), &args, span, numeric, &what),
            BinaryOp::Ge => self.elementwise(Op::Compare(CompareOp::Ge), &args, span, numeric, &what),
            BinaryOp::MatMul => {
                let [a, b] = args;
                self.matmul(a, b, span)
            }
            BinaryOp::Rem => self.error(
                Diagnostic::new(Code("E0412"), span, "`%` works on compile-time integers only")
                    .label("remainder of a tensor")
                    .hint("for floats, write `x - floor(x / y) * y`"),
            ),
        }
    }

    fn int_binary(&mut self, op: BinaryOp, x: i64, y: i64, rhs: Span, span: Span) -> Value {
        use Value::{Bool, Int};
        let checked = match op {
            BinaryOp::Add => x.checked_add(y),
            BinaryOp::Sub => x.checked_sub(y),
            BinaryOp::Mul => x.checked_mul(y),
            BinaryOp::Div | BinaryOp::Rem if y == 0 => {
                return self.error(
                    Diagnostic::new(Code("E0412"), rhs, "division by zero in a compile-time integer")
                        .label("this is 0"),
                );
            }
            BinaryOp::Div => x.checked_div_euclid(y),
            BinaryOp::Rem => x.checked_rem_euclid(y),
            BinaryOp::Pow => u32::try_from(y).ok().and_then(|e| x.checked_pow(e)),
            BinaryOp::Eq => return Bool(x == y),
            BinaryOp::Ne => return Bool(x != y),
            BinaryOp::Lt => return Bool(x < y),
            BinaryOp::Le => return Bool(x <= y),
            BinaryOp::Gt => return Bool(x > y),
            BinaryOp::Ge => return Bool(x >= y),
            BinaryOp::MatMul | BinaryOp::And | BinaryOp::Or => {
                return self.bad_operands(op, &(Int(x), span), &(Int(y), rhs), span);
            }
        };
        match checked {
            Some(v) => Int(v),
            None => self.error(
                Diagnostic::new(
                    Code("E0412"),
                    span,
                    format!("compile-time integer arithmetic overflows: {x} {} {y}", op.symbol()),
                )
                .label("overflows 64 bits"),
            ),
        }
    }

    fn bad_operands(&mut self, op: BinaryOp, a: &(Value, Span), b: &(Value, Span), span: Span) -> Value {
        let (wa, wb) = (a.0.describe(|id| self.ty(id)), b.0.describe(|id| self.ty(id)));
        self.error(
            Diagnostic::new(Code("E0304"), span, format!("`{}` cannot combine {wa} and {wb}", op.symbol()))
                .label("unsupported operands")
                .also(a.1, wa)
                .also(b.1, wb),
        )
    }

    /// Matches actual arguments to declared parameters: positional first,
    /// then by name. Returns one slot per parameter (`None`: use its default).
    pub fn bind_args(
        &mut self,
        params: &[FnParam],
        args: &[ActualArg],
        callee: &str,
        span: Span,
    ) -> Option<Vec<Option<(Value, Span)>>> {
        let mut slots: Vec<Option<(Value, Span)>> = vec![None; params.len()];
        let mut positional = 0;
        for a in args {
            let index = match &a.name {
                None => {
                    if positional >= params.len() {
                        self.error(
                            Diagnostic::new(
                                Code("E0301"),
                                a.span,
                                format!(
                                    "{callee} takes {}, but more were given",
                                    super::builtins::count(params.len(), "argument")
                                ),
                            )
                            .label("extra argument"),
                        );
                        return None;
                    }
                    positional += 1;
                    positional - 1
                }
                Some(name) => match params.iter().position(|p| p.name.name == name.name) {
                    Some(i) => i,
                    None => {
                        let names: Vec<String> = params.iter().map(|p| p.name.name.clone()).collect();
                        let mut d = Diagnostic::new(
                            Code("E0302"),
                            name.span,
                            format!("{callee} has no parameter `{}`", name.name),
                        )
                        .label("unknown argument name");
                        d = d.hint(match closest(&name.name, &names) {
                            Some(best) => format!("did you mean `{best}`?"),
                            None => format!("its parameters are: {}", names.join(", ")),
                        });
                        self.error(d);
                        return None;
                    }
                },
            };
            if slots[index].is_some() {
                self.error(
                    Diagnostic::new(
                        Code("E0303"),
                        a.span,
                        format!("`{}` of {callee} is given twice", params[index].name.name),
                    )
                    .label("given again here"),
                );
                return None;
            }
            slots[index] = Some((a.value.clone(), a.span));
        }
        for (p, slot) in params.iter().zip(&slots) {
            if slot.is_none() && p.default.is_none() {
                self.error(
                    Diagnostic::new(Code("E0303"), span, format!("{callee} needs argument `{}`", p.name.name))
                        .label(format!("missing `{}`", p.name.name))
                        .also(p.name.span, "declared here"),
                );
                return None;
            }
        }
        Some(slots)
    }

    pub fn call(&mut self, callee: Value, args: Vec<ActualArg>, callee_span: Span, span: Span) -> Value {
        if args.iter().any(|a| matches!(a.value, Value::Poison)) {
            return Value::Poison;
        }
        match callee {
            Value::Callable(Callable::Fn(f)) => self.inline(&f, None, args, span),
            Value::Callable(Callable::Method(inst, f)) => self.inline(&f, Some(inst), args, span),
            Value::Model(inst) => {
                let forward = self.instances[inst].members.get("forward").cloned();
                match forward {
                    Some(MemberValue::Fn(f)) => self.inline(&f, Some(inst), args, span),
                    _ => {
                        let model = self.instances[inst].decl.name.name.clone();
                        self.error(
                            Diagnostic::new(
                                Code("E0204"),
                                callee_span,
                                format!("model `{model}` has no `forward` function to call"),
                            )
                            .label("called here"),
                        )
                    }
                }
            }
            Value::Callable(Callable::Builtin(name)) => self.builtin(name, args, span),
            Value::Callable(Callable::Model(m)) => self.error(
                Diagnostic::new(
                    Code("E0204"),
                    span,
                    format!("model `{}` can only be instantiated as a member of a model", m.name.name),
                )
                .label("instantiated inside a function")
                .hint(format!("declare it in the model: `layer = {}(...)`", m.name.name)),
            ),
            Value::Poison => Value::Poison,
            other => {
                let what = other.describe(|id| self.ty(id));
                self.error(
                    Diagnostic::new(Code("E0204"), callee_span, format!("{what} cannot be called"))
                        .label("not a function"),
                )
            }
        }
    }

    /// Inlines a call of a kiln function: binds and checks its arguments,
    /// lowers its body in a fresh scope, and checks its result.
    pub(super) fn inline(
        &mut self,
        f: &Rc<FnDecl>,
        instance: Option<usize>,
        args: Vec<ActualArg>,
        span: Span,
    ) -> Value {
        if self.call_depth >= MAX_CALL_DEPTH {
            return self.error(
                Diagnostic::new(
                    Code("E0207"),
                    span,
                    format!("calls nest more than {MAX_CALL_DEPTH} deep; is `{}` recursive?", f.name.name),
                )
                .label("this call")
                .note("kiln inlines every call, so a function cannot call itself"),
            );
        }
        let callee = format!("`{}`", f.name.name);
        let Some(slots) = self.bind_args(&f.params, &args, &callee, span) else { return Value::Poison };
        let mut env = Env::new(instance);
        for (p, slot) in f.params.iter().zip(slots) {
            let (value, vspan) = match slot {
                Some(v) => v,
                None => match &p.default {
                    Some(d) => (self.eval(d, &mut env), d.span),
                    None => return Value::Poison,
                },
            };
            let value = match &p.ty {
                ParamType::Scalar(..) => match self.check_scalar_param(p, value, vspan) {
                    Some(v) => v,
                    None => return Value::Poison,
                },
                ParamType::Tensor(pat) => {
                    let value = match value {
                        Value::Float(_) | Value::Int(_) | Value::Bool(_) if pat.dims.is_empty() => {
                            let Some(dtype) = self.dtype_name(&pat.dtype) else { return Value::Poison };
                            match self.operand(&value, dtype, vspan, (pat.span, "declared here".into())) {
                                Some(super::tensor::Operand::Lit(l)) => self.emit(
                                    Op::Constant { value: l, dtype, shape: kiln_ir::Shape::scalar() },
                                    &[],
                                    vspan,
                                ),
                                _ => return Value::Poison,
                            }
                        }
                        v => v,
                    };
                    let Value::Tensor(id) = value else {
                        let what = value.describe(|id| self.ty(id));
                        return self.error(
                            Diagnostic::new(
                                Code("E0304"),
                                vspan,
                                format!("argument `{}` of {callee} must be a tensor, not {what}", p.name.name),
                            )
                            .label("expected a tensor")
                            .also(pat.span, "declared here"),
                        );
                    };
                    let ty = self.ty(id);
                    if !self.match_type(
                        pat,
                        &ty,
                        &mut env,
                        &format!("argument `{}` of {callee}", p.name.name),
                        vspan,
                        "E0406",
                    ) {
                        return Value::Poison;
                    }
                    value
                }
            };
            env.bind(&p.name.name, value, p.name.span);
        }
        self.call_depth += 1;
        self.call_stack.push(span);
        let result = self.eval_block(&f.body, &mut env);
        self.call_stack.pop();
        self.call_depth -= 1;
        let result = self.check_result(f, result, &mut env);
        if let Value::Tensor(id) = result
            && self.call_depth == 0
            && self.forward_result.is_none()
            && instance.is_some()
            && instance == self.forward_of
            && f.name.name == "forward"
        {
            self.forward_result = Some(id);
        }
        result
    }

    /// `x[i, a:b, ...]`: integers pick one element (the axis goes away),
    /// ranges slice, and one integer tensor gathers along its axis.
    fn index(&mut self, v: Value, items: &[IndexItem], env: &mut Env, span: Span) -> Value {
        let Value::Tensor(mut x) = v else {
            if let Value::List(list) = &v
                && let [IndexItem::At(e)] = items
                && let Value::Int(i) = self.eval(e, env)
                && let Some(i) = normalize_axis(i, list.len())
            {
                return list[i].clone();
            }
            if matches!(v, Value::Poison) {
                return v;
            }
            let what = v.describe(|id| self.ty(id));
            return self.error(
                Diagnostic::new(Code("E0304"), span, format!("{what} cannot be indexed")).label("not a tensor"),
            );
        };
        let ty = self.ty(x);
        if items.len() > ty.rank() {
            return self.error(
                Diagnostic::new(
                    Code("E0404"),
                    span,
                    format!("{} indices for {ty}, which has rank {}", items.len(), ty.rank()),
                )
                .label("too many indices"),
            );
        }
        let mut dropped = Vec::new();
        let mut gathered: Option<(usize, kiln_ir::NodeId, Span)> = None;
        for (axis, item) in items.iter().enumerate() {
            let bounds = match item {
                IndexItem::At(e) => match self.eval(e, env) {
                    Value::Int(i) => {
                        dropped.push(axis);
                        let stop = if i == -1 { None } else { Some(i.saturating_add(1)) };
                        (Some(i), stop, 1)
                    }
                    Value::Tensor(idx) if self.ty(idx).dtype.is_int() && gathered.is_none() => {
                        gathered = Some((axis, idx, e.span));
                        continue;
                    }
                    Value::Poison => return Value::Poison,
                    other => {
                        let what = other.describe(|id| self.ty(id));
                        return self.error(
                            Diagnostic::new(
                                Code("E0404"),
                                e.span,
                                format!("an index must be an integer or one integer tensor, not {what}"),
                            )
                            .label("bad index"),
                        );
                    }
                },
                IndexItem::Range { start, stop, step, span: s } => {
                    let mut bound = |c: &mut Self, e: &Option<Box<Expr>>| -> Result<Option<i64>, ()> {
                        match e.as_ref().map(|e| (c.eval(e, env), e.span)) {
                            None => Ok(None),
                            Some((Value::Int(i), _)) => Ok(Some(i)),
                            Some((Value::Poison, _)) => Err(()),
                            Some((other, s)) => {
                                let what = other.describe(|id| c.ty(id));
                                c.error(
                                    Diagnostic::new(
                                        Code("E0404"),
                                        s,
                                        format!("slice bounds must be integers, not {what}"),
                                    )
                                    .label("bad bound"),
                                );
                                Err(())
                            }
                        }
                    };
                    let (Ok(a), Ok(b), Ok(c)) = (bound(self, start), bound(self, stop), bound(self, step)) else {
                        return Value::Poison;
                    };
                    let _ = s;
                    (a, b, c.unwrap_or(1))
                }
            };
            let item_span = match item {
                IndexItem::At(e) => e.span,
                IndexItem::Range { span, .. } => *span,
            };
            match self.slice_axis(x, axis, bounds, item_span) {
                Some(id) => x = id,
                None => return Value::Poison,
            }
        }
        if !dropped.is_empty() {
            let shape = self.ty(x).shape;
            let kept = kiln_ir::Shape(
                shape.0.iter().enumerate().filter(|(i, _)| !dropped.contains(i)).map(|(_, d)| d.clone()).collect(),
            );
            match self.reshape_node(x, kept, span) {
                Some(id) => x = id,
                None => return Value::Poison,
            }
        }
        if let Some((axis, idx, _)) = gathered {
            let axis = axis - dropped.iter().filter(|&&d| d < axis).count();
            return self.emit(Op::Gather { axis }, &[x, idx], span);
        }
        Value::Tensor(x)
    }
}

/// Names sorted and joined, for messages.
fn sorted(names: &[String]) -> String {
    let mut names = names.to_vec();
    names.sort();
    names.join(", ")
}

fn as_f64(v: &Value) -> f64 {
    match v {
        Value::Int(i) => *i as f64,
        Value::Float(x) => *x,
        _ => 0.0,
    }
}

/// The candidate closest to `name` by edit distance, if close enough.
pub fn closest(name: &str, candidates: &[String]) -> Option<String> {
    let limit = (name.len() / 3).max(1);
    candidates
        .iter()
        .filter(|c| c.as_str() != name)
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)))
        .map(|(_, c)| c.clone())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut prev = row[0];
        row[0] = i;
        for j in 1..=b.len() {
            let cur = row[j];
            row[j] = (row[j] + 1).min(row[j - 1] + 1).min(prev + usize::from(a[i - 1] != b[j - 1]));
            prev = cur;
        }
    }
    row[b.len()]
}
