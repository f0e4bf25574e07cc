//! Checking and lowering: resolves names, checks dtypes and shapes, and
//! builds graph IR, in one walk over the syntax tree.
//!
//! kiln lowers by partial evaluation: compile-time values (model arguments,
//! integers, `for` ranges, `if training`) are computed, model instances are
//! built from their definitions, and every call of a kiln function is inlined
//! into the graph being built, so the IR holds only primitives. Each tensor
//! operation is checked as it is built, against the types of its actual
//! operands, so an error points at the expression that caused it and names
//! both shapes. Errors poison their value (see [`env::Value::Poison`]) so
//! that checking goes on and reports several errors per file.
//!
//! What gets lowered: the root model's functions whose inputs have a known
//! rank and whose compile-time arguments all have defaults, and the `train`
//! block's functions (with `training` true). A file without a model lowers
//! its top-level functions that qualify in the same way.

mod builtins;
mod env;
mod expr;
mod model;
mod optimize;
mod signature;
mod tensor;

use std::collections::HashMap;
use std::rc::Rc;

use kiln_ir::{Function, Module, NodeId, Op, TensorType};

use crate::ast::{self, FnDecl, ModelDecl, ParamType};
use crate::diag::{Code, Diagnostic};
use crate::source::{SourceMap, Span};
use crate::train::{Optimizer, TrainSpec};
use env::{Env, Instance, Value};

/// A checked and lowered program.
#[derive(Clone, Debug)]
pub struct Program {
    pub module: Module,
    /// The model the module was lowered from, if any.
    pub model: Option<String>,
    pub train: Option<TrainSpec>,
}

/// Choices the caller makes about what to lower.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The root model; by default the trained one, or the only candidate.
    pub model: Option<String>,
    /// A learning rate that replaces the `train` block's.
    pub lr: Option<f64>,
    /// Lower the model's own functions in training mode (`training` true:
    /// dropout active, batch norm on batch statistics). By default they are
    /// in evaluation mode; the `train` block's functions always train.
    pub training: bool,
    /// Values for the root model's compile-time arguments, replacing their
    /// defaults: `("size", "96")` (an integer, a number, `true` or `false`).
    pub args: Vec<(String, String)>,
}

/// The items of every file, user definitions shadowing the prelude's.
pub(crate) struct Items {
    pub fns: HashMap<String, Rc<FnDecl>>,
    pub models: HashMap<String, Rc<ModelDecl>>,
    pub trains: Vec<ast::TrainDecl>,
    /// The file being compiled (not the prelude, not a `use`d file).
    pub root_file: crate::source::FileId,
}

pub(crate) struct Checker<'a> {
    pub sources: &'a SourceMap,
    pub items: &'a Items,
    pub diags: Vec<Diagnostic>,
    pub module: Module,
    pub instances: Vec<Instance>,
    /// The function being built, its parameter nodes, and its random key.
    pub func: Function,
    pub param_nodes: HashMap<String, NodeId>,
    pub key: Option<NodeId>,
    pub next_stream: u64,
    /// Inlined calls in progress, to stop runaway recursion.
    pub call_depth: usize,
    /// The spans of the inlined calls in progress, outermost first.
    pub call_stack: Vec<Span>,
    /// Whether the function being built is a training function.
    pub training: bool,
    /// Models being instantiated, to report a model that contains itself.
    pub model_stack: Vec<String>,
    /// A learning rate that replaces the `train` block's.
    pub lr_override: Option<f64>,
    /// While lowering the loss: the instance whose `forward` result is
    /// kept, and that result (the first call made directly in the loss's
    /// body), which the training step returns beside the loss.
    pub forward_of: Option<usize>,
    pub forward_result: Option<NodeId>,
    /// The qualified names of the parameters declared `state`: updated by
    /// assignment, never trained.
    pub states: std::collections::HashSet<String>,
    /// The state assigned in the function being built, in first-assignment
    /// order, with its latest value.
    pub state_updates: Vec<(String, NodeId)>,
    /// Whether the function being built returns its state updates (the
    /// loss does), and the state it returned them for.
    pub keep_state: bool,
    pub loss_states: Vec<String>,
}

/// Checks `file`'s items (already collected with the prelude's) and lowers them.
pub(crate) fn check_program(
    sources: &SourceMap,
    items: &Items,
    user_models: &[String],
    options: &Options,
) -> Result<Program, Vec<Diagnostic>> {
    let mut c = Checker {
        sources,
        items,
        diags: Vec::new(),
        module: Module::default(),
        instances: Vec::new(),
        func: Function::new("", Vec::new()),
        param_nodes: HashMap::new(),
        key: None,
        next_stream: 0,
        call_depth: 0,
        call_stack: Vec::new(),
        training: false,
        model_stack: Vec::new(),
        lr_override: options.lr,
        forward_of: None,
        forward_result: None,
        states: Default::default(),
        state_updates: Vec::new(),
        keep_state: false,
        loss_states: Vec::new(),
    };
    let root = c.choose_root(user_models, options);
    let mut train = None;
    match &root {
        Some(model) => {
            if let Some(instance) = c.instantiate_root(model, &options.args) {
                c.lower_model_functions(instance, options.training);
                train = c.lower_train(model, instance);
            }
        }
        None => c.lower_free_functions(),
    }
    if c.diags.is_empty()
        && let Err(e) = kiln_ir::verify_module(&c.module)
    {
        // The frontend checks everything the verifier does; reaching this is a bug.
        let span = root
            .as_ref()
            .and_then(|m| items.models.get(m))
            .map_or(Span::new(crate::source::FileId(0), 0, 0), |m| m.span);
        c.diags.push(
            Diagnostic::new(
                Code("E0801"),
                span,
                format!("internal error: the lowered IR does not verify: {}", e.message),
            )
            .note(kiln_ir::render_error(&c.module, &e)),
        );
    }
    if c.diags.is_empty() { Ok(Program { module: c.module, model: root, train }) } else { Err(c.diags) }
}

impl Checker<'_> {
    /// Reports `d`. An error inside an inlined function of another file
    /// (the prelude, a `use`d file) also points at the call in this file.
    pub fn error(&mut self, mut d: Diagnostic) -> Value {
        if let Some(&outer) = self.call_stack.iter().find(|s| s.file == self.items.root_file)
            && d.span.file != outer.file
            && !d.secondary.iter().any(|(s, _)| s.file == outer.file)
        {
            d = d.also(outer, "in this call");
        }
        self.diags.push(d);
        Value::Poison
    }

    pub fn ty(&self, id: NodeId) -> TensorType {
        self.func.graph.ty(id).clone()
    }

    /// Adds a node to the function being built. The caller has checked the
    /// operands; a failure here is an internal error, reported, not a panic.
    pub fn emit(&mut self, op: Op, args: &[NodeId], span: Span) -> Value {
        // The line in the root file: the op's own, or that of the innermost
        // call in the root file that brought it in from the prelude.
        let root = self.items.root_file;
        let at =
            if span.file == root { Some(span) } else { self.call_stack.iter().rev().find(|s| s.file == root).copied() };
        self.func.graph.set_line(at.map(|s| self.sources.line(s)));
        let ctx = kiln_ir::TypeContext { inputs: &self.func.inputs, params: &self.module.params };
        match self.func.graph.add(&ctx, op, args) {
            Ok(id) => match self.func.graph.ty(id).too_large() {
                Some(why) => self.error(
                    Diagnostic::new(Code("E0418"), span, format!("this value is too large: {why}"))
                        .label("computed here"),
                ),
                None => Value::Tensor(id),
            },
            Err(message) => self.error(
                Diagnostic::new(Code("E0801"), span, format!("internal error: {message}")).label("while lowering this"),
            ),
        }
    }

    fn choose_root(&mut self, user_models: &[String], options: &Options) -> Option<String> {
        if let Some(name) = &options.model {
            if self.items.models.contains_key(name) {
                return Some(name.clone());
            }
            let span = Span::new(crate::source::FileId(0), 0, 0);
            self.error(
                Diagnostic::new(Code("E0701"), span, format!("no model named `{name}` in this file"))
                    .label("asked for with --model"),
            );
            return None;
        }
        if let Some(t) = self.items.trains.first() {
            return Some(t.model.name.clone());
        }
        let used: Vec<&str> = user_models
            .iter()
            .filter_map(|m| self.items.models.get(m))
            .flat_map(|m| m.members.iter())
            .filter_map(|member| match member {
                ast::Member::Sub { value, .. } => callee_name(value),
                _ => None,
            })
            .collect();
        let complete: Vec<&String> =
            user_models.iter().filter(|m| self.items.models[*m].params.iter().all(|p| p.default.is_some())).collect();
        let unused: Vec<&String> = complete.iter().copied().filter(|m| !used.contains(&m.as_str())).collect();
        // Models that contain each other are all "used"; fall back to them so
        // that the cycle is reported.
        let candidates = if unused.is_empty() { complete } else { unused };
        match candidates.as_slice() {
            [] => None,
            [one] => Some((*one).clone()),
            [first, second, ..] => {
                let (a, b) = (&self.items.models[*first], &self.items.models[*second]);
                self.error(
                    Diagnostic::new(Code("E0701"), b.name.span, "more than one model could be compiled")
                        .label("this model")
                        .also(a.name.span, "and this one")
                        .hint("choose one with `--model NAME`"),
                );
                None
            }
        }
    }

    /// Starts a new function with `inputs`; `training` says whether dropout
    /// and other training-only behaviour is on.
    fn begin_function(&mut self, name: &str, training: bool) {
        self.func = Function::new(name, Vec::new());
        self.param_nodes.clear();
        self.key = None;
        self.next_stream = 0;
        self.training = training;
        self.state_updates.clear();
    }

    fn finish_function(&mut self, outputs: Vec<NodeId>) {
        let mut f = std::mem::replace(&mut self.func, Function::new("", Vec::new()));
        f.outputs = outputs;
        f.graph.set_line(None);
        if self.module.function(&f.name).is_none() {
            self.module.functions.push(f);
        }
    }

    /// Lowers a function as an entry point: its tensor inputs become IR
    /// inputs with symbolic dimensions; its compile-time arguments take their
    /// defaults. Returns the output node, or `None` after reporting errors.
    fn lower_entry(&mut self, decl: &FnDecl, instance: Option<usize>, training: bool) -> Option<NodeId> {
        self.begin_function(&decl.name.name, training);
        let errors_before = self.diags.len();
        let mut env = Env::new(instance);
        for p in &decl.params {
            match (&p.ty, &p.default) {
                (ParamType::Tensor(t), _) => {
                    let ty = self.entry_type(t, &mut env)?;
                    let index = self.func.inputs.len() as u32;
                    self.func.inputs.push(kiln_ir::InputDecl { name: p.name.name.clone(), ty });
                    let v = self.emit(Op::Input { index }, &[], p.name.span);
                    env.bind(&p.name.name, v, p.name.span);
                }
                (ParamType::Scalar(..), Some(default)) => {
                    let v = self.eval(default, &mut env);
                    env.bind(&p.name.name, v, p.name.span);
                }
                (ParamType::Scalar(..), None) => return None,
            }
        }
        let result = self.eval_block(&decl.body, &mut env);
        let result = self.check_result(decl, result, &mut env);
        if self.diags.len() > errors_before {
            return None;
        }
        // An entry function may return a list of tensors: one output each
        // (a recurrent step's prediction and its new state).
        let (result, more) = match result {
            Value::List(items) if !items.is_empty() && items.iter().all(|v| matches!(v, Value::Tensor(_))) => {
                let ids: Vec<NodeId> =
                    items.iter().filter_map(|v| if let Value::Tensor(id) = v { Some(*id) } else { None }).collect();
                (Value::Tensor(ids[0]), ids[1..].to_vec())
            }
            other => (other, Vec::new()),
        };
        match result {
            Value::Tensor(id) => {
                let mut outputs = vec![id];
                outputs.extend(more);
                if self.keep_state {
                    let updates = std::mem::take(&mut self.state_updates);
                    self.loss_states = updates.iter().map(|(name, _)| name.clone()).collect();
                    outputs.extend(updates.into_iter().map(|(_, value)| value));
                }
                self.finish_function(outputs);
                Some(id)
            }
            Value::Poison => None,
            other => {
                let span = decl.body.value.as_ref().map_or(decl.body.span, |v| v.span);
                self.result_not_tensor(decl, &other, span);
                None
            }
        }
    }

    /// Whether a function can be an entry point: every compile-time argument
    /// has a default and no input has `...`.
    fn is_entry(decl: &FnDecl) -> bool {
        decl.params.iter().all(|p| match &p.ty {
            ParamType::Tensor(t) => !t.dims.iter().any(|d| matches!(d, ast::DimExpr::Ellipsis(_))),
            ParamType::Scalar(..) => p.default.is_some(),
        })
    }

    fn lower_model_functions(&mut self, instance: usize, training: bool) {
        let decl = self.instances[instance].decl.clone();
        for member in &decl.members {
            if let ast::Member::Fn(f) = member
                && Self::is_entry(f)
            {
                self.lower_entry(f, Some(instance), training);
            }
        }
    }

    fn lower_free_functions(&mut self) {
        let mut fns: Vec<Rc<FnDecl>> = self
            .items
            .fns
            .values()
            .filter(|f| f.span.file == self.items.root_file && Self::is_entry(f))
            .cloned()
            .collect();
        fns.sort_by_key(|f| (f.span.file, f.span.start));
        for f in fns {
            self.lower_entry(&f, None, false);
        }
    }

    fn lower_train(&mut self, model: &str, instance: usize) -> Option<TrainSpec> {
        let train = self.items.trains.iter().find(|t| t.model.name == model)?.clone();
        if self.module.params.iter().all(|p| self.states.contains(&p.name)) {
            self.error(
                Diagnostic::new(Code("E0605"), train.model.span, format!("model `{model}` has no parameters to train"))
                    .label("this model declares no `param`, directly or in its sub-models"),
            );
        }
        for f in &train.fns {
            if self.module.function(&f.name.name).is_some() {
                self.error(
                    Diagnostic::new(
                        Code("E0202"),
                        f.name.span,
                        format!("`{}` is already a function of `{model}`", f.name.name),
                    )
                    .label("defined again here"),
                );
                continue;
            }
            if f.name.name == "loss" {
                self.forward_of = Some(instance);
                self.forward_result = None;
                self.keep_state = true;
            }
            self.lower_entry(f, Some(instance), true);
            self.forward_of = None;
            self.keep_state = false;
        }
        let Some(loss) = train.fns.iter().find(|f| f.name.name == "loss") else {
            self.error(
                Diagnostic::new(Code("E0602"), train.span, "a `train` block needs a `fn loss`")
                    .label("no `fn loss` in this block")
                    .hint("add `fn loss(x: f32[N, 784], y: i32[N]) -> f32 { mean(cross_entropy(forward(x), y)) }`"),
            );
            return None;
        };
        if let Some(f) = self.module.function("loss") {
            let ty = f.output_types()[0].clone();
            if !(ty.rank() == 0 && ty.dtype.is_float()) {
                let span = loss.ret.as_ref().map_or(loss.name.span, |r| r.span);
                self.error(
                    Diagnostic::new(Code("E0410"), span, format!("the loss must be a float scalar, but it is {ty}"))
                        .label("the loss's type")
                        .hint("reduce it, for example with `mean(...)`"),
                );
            }
        }
        let optimizer = match &train.optimizer {
            Some(o) => self.optimizer(o)?,
            None => {
                self.error(
                    Diagnostic::new(Code("E0604"), train.span, "a `train` block needs an optimizer")
                        .label("no `optimizer` in this block")
                        .hint("add for example `optimizer sgd(lr = 0.1)`"),
                );
                return None;
            }
        };
        let update = self.lower_apply_gradients(&optimizer, train.optimizer.as_ref().map_or(train.span, |o| o.span))?;
        let loss_and_logits = self.loss_and_logits();
        let state = std::mem::take(&mut self.loss_states);
        Some(TrainSpec {
            model: model.to_string(),
            loss: "loss".into(),
            loss_and_logits,
            optimizer,
            params: update.params,
            apply: "apply_gradients".into(),
            updates: state.iter().cloned().chain(update.updates).collect(),
            state,
        })
    }

    /// The function `loss_and_logits`: the loss's graph returning, beside
    /// the loss, the value of the model's `forward` that the loss called
    /// directly, when it did, that value is `[N, classes]` and the loss
    /// takes integer labels `[N]` (a classifier, one row per label). A training loop measures
    /// accuracy on it without a second forward pass.
    fn loss_and_logits(&mut self) -> Option<String> {
        const NAME: &str = "loss_and_logits";
        let logits = self.forward_result.take()?;
        let loss = self.module.function("loss")?;
        let ty = loss.graph.ty(logits);
        // One row of logits per label: the labels' first dimension leads them.
        let rows = ty.shape.0.first();
        let labels = loss.inputs.iter().any(|i| i.ty.dtype.is_int() && i.name != "key" && i.ty.shape.0.first() == rows);
        if self.module.function(NAME).is_some() || ty.rank() != 2 || !labels {
            return None;
        }
        let mut f = loss.clone();
        f.name = NAME.into();
        // After the loss, before the state updates (which come last).
        f.outputs.insert(1, logits);
        self.module.functions.push(f);
        Some(NAME.into())
    }

    fn optimizer(&mut self, decl: &ast::OptimizerDecl) -> Option<Optimizer> {
        let mut env = Env::new(None);
        let mut args = Vec::new();
        for a in &decl.args {
            let Some(name) = &a.name else {
                self.error(
                    Diagnostic::new(Code("E0301"), a.value.span, "optimizer arguments are named")
                        .label("give this argument a name")
                        .hint("write for example `sgd(lr = 0.1)`"),
                );
                return None;
            };
            let value = match self.eval(&a.value, &mut env) {
                Value::Float(x) => x,
                Value::Int(i) => i as f64,
                Value::Poison => return None,
                other => {
                    let what = other.describe(|_| TensorType::scalar(kiln_ir::DType::F32));
                    self.error(
                        Diagnostic::new(
                            Code("E0304"),
                            a.value.span,
                            format!("`{}` must be a number, not {what}", name.name),
                        )
                        .label("expected a number"),
                    );
                    return None;
                }
            };
            args.push((name.clone(), value));
        }
        if let Some(lr) = self.lr_override {
            args.retain(|(n, _)| n.name != "lr");
            args.push((crate::ast::Ident { name: "lr".into(), span: decl.name.span }, lr));
        }
        match Optimizer::from_args(&decl.name.name, &args) {
            Ok(o) => Some(o),
            Err((span, message, hint)) => {
                let span = span.unwrap_or(decl.name.span);
                self.error(Diagnostic::new(Code("E0603"), span, message).label("here").hint(hint));
                None
            }
        }
    }
}

/// The name a sub-model expression calls: `Linear` in `Linear(784, 10)`.
fn callee_name(e: &ast::Expr) -> Option<&str> {
    match &e.kind {
        ast::ExprKind::Call(f, _) => match &f.kind {
            ast::ExprKind::Name(n) => Some(n),
            _ => None,
        },
        _ => None,
    }
}
