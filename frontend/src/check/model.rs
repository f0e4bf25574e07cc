//! Instantiating models: binding their compile-time arguments, declaring
//! their parameters (with path-qualified names like `fc1.w`) and
//! initializers in the module, and instantiating sub-models recursively.

use std::collections::HashMap;
use std::rc::Rc;

use kiln_ir::{F64Bits, Init, ParamDecl};

use super::Checker;
use super::env::{Callable, Env, Instance, MemberValue, Value};
use crate::ast::{Expr, ExprKind, Member, ModelDecl};
use crate::diag::{Code, Diagnostic};
use crate::source::Span;

const INITIALIZERS: &str =
    "kiln has zeros, ones, normal(mean, std), uniform(low, high), xavier_uniform and kaiming_normal";

impl Checker<'_> {
    /// Instantiates the root model with its default arguments, or the
    /// values `given` for some of them.
    pub fn instantiate_root(&mut self, name: &str, given: &[(String, String)]) -> Option<usize> {
        let decl = self.items.models.get(name)?.clone();
        for (arg, _) in given {
            if !decl.params.iter().any(|p| p.name.name == *arg) {
                let names: Vec<&str> = decl.params.iter().map(|p| p.name.name.as_str()).collect();
                self.error(
                    Diagnostic::new(Code("E0302"), decl.name.span, format!("model `{name}` has no argument `{arg}`"))
                        .label("given a value for it with --set")
                        .hint(if names.is_empty() {
                            "this model takes no arguments".to_string()
                        } else {
                            format!("its arguments are {}", names.join(", "))
                        }),
                );
                return None;
            }
        }
        let mut env = Env::new(None);
        let mut args = Vec::new();
        for p in &decl.params {
            if let Some((_, text)) = given.iter().rev().find(|(arg, _)| *arg == p.name.name) {
                let value = match text.trim() {
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    t => match (t.parse::<i64>(), t.parse::<f64>()) {
                        (Ok(i), _) => Value::Int(i),
                        (_, Ok(x)) if x.is_finite() => Value::Float(x),
                        _ => {
                            self.error(
                                Diagnostic::new(
                                    Code("E0304"),
                                    p.name.span,
                                    format!(
                                        "--set {}={text}: not an integer, a number, `true` or `false`",
                                        p.name.name
                                    ),
                                )
                                .label("this argument"),
                            );
                            return None;
                        }
                    },
                };
                let value = self.check_scalar_param(p, value, p.name.span)?;
                env.bind(&p.name.name, value.clone(), p.name.span);
                args.push((p.name.name.clone(), value));
                continue;
            }
            let Some(default) = &p.default else {
                self.error(
                    Diagnostic::new(
                        Code("E0702"),
                        p.name.span,
                        format!("model `{name}` is compiled on its own, but `{}` has no default", p.name.name),
                    )
                    .label("needs a default value")
                    .hint(format!("write for example `{}: int = 10`", p.name.name)),
                );
                return None;
            };
            let value = self.eval(default, &mut env);
            let value = self.check_scalar_param(p, value, default.span)?;
            env.bind(&p.name.name, value.clone(), p.name.span);
            args.push((p.name.name.clone(), value));
        }
        let span = decl.name.span;
        self.instantiate(decl, args, String::new(), span)
    }

    /// Instantiates `decl` with bound arguments at `path`.
    fn instantiate(
        &mut self,
        decl: Rc<ModelDecl>,
        args: Vec<(String, Value)>,
        path: String,
        use_span: Span,
    ) -> Option<usize> {
        let name = decl.name.name.clone();
        if self.model_stack.contains(&name) {
            let chain = self.model_stack.iter().chain(std::iter::once(&name)).cloned().collect::<Vec<_>>().join(" -> ");
            self.error(
                Diagnostic::new(Code("E0206"), use_span, format!("model `{name}` contains itself"))
                    .label("instantiated again here")
                    .also(decl.name.span, "defined here")
                    .note(format!("the chain is {chain}; a model cannot be infinitely deep")),
            );
            return None;
        }
        self.model_stack.push(name);
        let id = self.instances.len();
        let mut members = HashMap::new();
        let mut defined: HashMap<String, Span> = HashMap::new();
        for p in &decl.params {
            defined.insert(p.name.name.clone(), p.name.span);
        }
        for (arg, value) in args {
            members.insert(arg, MemberValue::Arg(value));
        }
        for m in &decl.members {
            let (ident, is_fn) = match m {
                Member::Param { name, .. } | Member::Sub { name, .. } => (name, false),
                Member::Fn(f) => (&f.name, true),
            };
            if let Some(previous) = defined.get(&ident.name) {
                self.error(
                    Diagnostic::new(
                        Code("E0202"),
                        ident.span,
                        format!("`{}` is defined twice in model `{}`", ident.name, decl.name.name),
                    )
                    .label("defined again here")
                    .also(*previous, "first defined here"),
                );
                continue;
            }
            defined.insert(ident.name.clone(), ident.span);
            if is_fn && let Member::Fn(f) = m {
                members.insert(ident.name.clone(), MemberValue::Fn(Rc::new(f.clone())));
            }
        }
        self.instances.push(Instance { decl: decl.clone(), path, members });
        let mut env = Env::new(Some(id));
        for m in &decl.members {
            match m {
                Member::Param { name, ty, init, state, .. } => {
                    if self.instances[id].members.contains_key(&name.name) {
                        continue;
                    }
                    let poison = MemberValue::Arg(Value::Poison);
                    let Some(ty) = self.static_type(ty, &mut env) else {
                        self.instances[id].members.insert(name.name.clone(), poison);
                        continue;
                    };
                    if let Some(why) = ty.too_large() {
                        self.error(
                            Diagnostic::new(
                                Code("E0418"),
                                name.span,
                                format!("parameter `{}` is too large: {why}", name.name),
                            )
                            .label("declared here"),
                        );
                        self.instances[id].members.insert(name.name.clone(), poison);
                        continue;
                    }
                    let Some(init) = self.initializer(init, ty.dtype, &mut env) else {
                        self.instances[id].members.insert(name.name.clone(), poison);
                        continue;
                    };
                    let qualified = self.instances[id].qualify(&name.name);
                    if *state {
                        self.states.insert(qualified.clone());
                    }
                    self.module.params.push(ParamDecl { name: qualified.clone(), ty, init });
                    self.instances[id].members.insert(name.name.clone(), MemberValue::Param(qualified));
                }
                Member::Sub { name, value, .. } => {
                    if self.instances[id].members.contains_key(&name.name) {
                        continue;
                    }
                    let path = self.instances[id].qualify(&name.name);
                    let member = match self.sub_models(value, path, &mut env) {
                        Some(Value::Model(child)) => MemberValue::Sub(child),
                        Some(list) => MemberValue::Arg(list),
                        None => MemberValue::Arg(Value::Poison),
                    };
                    self.instances[id].members.insert(name.name.clone(), member);
                }
                Member::Fn(_) => {}
            }
        }
        self.model_stack.pop();
        Some(id)
    }

    /// A sub-model member's value: a model call; a list of them, written out
    /// (`[Block(64), Block(128)]`) or as a comprehension (`[Block(c) for c
    /// in channels]`), whose items are named by position (`blocks.0.w`);
    /// or an `if` that picks one of these at compile time.
    fn sub_models(&mut self, value: &Expr, path: String, env: &mut Env) -> Option<Value> {
        match &value.kind {
            ExprKind::List(items) => {
                let mut models = Vec::with_capacity(items.len());
                for (k, item) in items.iter().enumerate() {
                    models.push(self.sub_models(item, format!("{path}.{k}"), env)?);
                }
                Some(Value::List(models))
            }
            ExprKind::Comprehension(item, var, iter) => {
                let values = self.for_values(iter, env)?;
                let mut models = Vec::with_capacity(values.len());
                for (k, v) in values.into_iter().enumerate() {
                    env.push();
                    env.bind(&var.name, v, var.span);
                    let model = self.sub_models(item, format!("{path}.{k}"), env);
                    env.pop();
                    models.push(model?);
                }
                Some(Value::List(models))
            }
            ExprKind::If(cond, then, otherwise) => {
                let chosen = if self.condition(cond, env)? { then } else { otherwise };
                match (&chosen.stmts[..], &chosen.value) {
                    ([], Some(inner)) => self.sub_models(inner, path, env),
                    _ => {
                        self.error(
                            Diagnostic::new(
                                Code("E0203"),
                                chosen.span,
                                "a branch of a sub-model `if` must be a model, or a list of them, alone",
                            )
                            .label("expected `{ Linear(784, 10) }` or `{ [] }`"),
                        );
                        None
                    }
                }
            }
            _ => self.sub_model(value, path, env).map(Value::Model),
        }
    }

    /// `Linear(784, 256)` as a member: evaluates the arguments and instantiates.
    fn sub_model(&mut self, value: &Expr, path: String, env: &mut Env) -> Option<usize> {
        let ExprKind::Call(callee, args) = &value.kind else {
            self.error(
                Diagnostic::new(Code("E0203"), value.span, "a model member must instantiate a model")
                    .label("expected a model call like `Linear(784, 10)`"),
            );
            return None;
        };
        let decl = match self.eval(callee, env) {
            Value::Callable(Callable::Model(m)) => m,
            Value::Poison => return None,
            other => {
                let what = other.describe(|id| self.ty(id));
                self.error(
                    Diagnostic::new(Code("E0203"), callee.span, format!("expected a model here, found {what}"))
                        .label("not a model"),
                );
                return None;
            }
        };
        let actual = self.eval_args(args, env)?;
        let slots = self.bind_args(&decl.params, &actual, &format!("model `{}`", decl.name.name), value.span)?;
        let mut callee_env = Env::new(None);
        let mut bound = Vec::new();
        for (p, slot) in decl.params.iter().zip(slots) {
            let (v, span) = match slot {
                Some(v) => v,
                None => {
                    let default = p.default.as_ref()?;
                    (self.eval(default, &mut callee_env), default.span)
                }
            };
            let v = self.check_scalar_param(p, v, span)?;
            callee_env.bind(&p.name.name, v.clone(), p.name.span);
            bound.push((p.name.name.clone(), v));
        }
        self.instantiate(decl, bound, path, value.span)
    }

    /// A parameter initializer: `zeros`, `normal(0.0, 0.01)`, ...
    fn initializer(&mut self, e: &Expr, dtype: kiln_ir::DType, env: &mut Env) -> Option<Init> {
        let (name, args) = match &e.kind {
            ExprKind::Name(n) => (n.as_str(), &[][..]),
            ExprKind::Call(f, args) => match &f.kind {
                ExprKind::Name(n) => (n.as_str(), &args[..]),
                _ => ("", &[][..]),
            },
            _ => ("", &[][..]),
        };
        let bad = |c: &mut Self, message: String| {
            c.error(
                Diagnostic::new(Code("E0501"), e.span, message).label("not a valid initializer").hint(INITIALIZERS),
            );
            None
        };
        let takes = match name {
            "zeros" | "ones" | "xavier_uniform" | "kaiming_normal" => 0,
            "normal" | "uniform" => 2,
            "" => return bad(self, "expected an initializer".into()),
            other => return bad(self, format!("unknown initializer `{other}`")),
        };
        if args.len() != takes {
            return bad(self, format!("`{name}` takes {takes} arguments, got {}", args.len()));
        }
        if !dtype.is_float() && !matches!(name, "zeros" | "ones") {
            return bad(self, format!("`{name}` draws floats, but the parameter is {dtype}"));
        }
        let mut values = Vec::new();
        for a in args {
            match self.eval(&a.value, env) {
                Value::Float(x) => values.push(x),
                Value::Int(i) => values.push(i as f64),
                Value::Poison => return None,
                _ => return bad(self, format!("the arguments of `{name}` must be numbers")),
            }
        }
        Some(match name {
            "zeros" => Init::Zeros,
            "ones" => Init::Ones,
            "xavier_uniform" => Init::XavierUniform,
            "kaiming_normal" => Init::KaimingNormal,
            "normal" if values[1] >= 0.0 && values.iter().all(|v| v.is_finite()) => {
                Init::Normal { mean: F64Bits::new(values[0]), std: F64Bits::new(values[1]) }
            }
            "uniform" if values[0] < values[1] && values.iter().all(|v| v.is_finite()) => {
                Init::Uniform { low: F64Bits::new(values[0]), high: F64Bits::new(values[1]) }
            }
            "normal" => return bad(self, format!("normal needs a finite mean and a non-negative std, got {values:?}")),
            _ => return bad(self, format!("uniform needs finite bounds with low < high, got {values:?}")),
        })
    }
}
