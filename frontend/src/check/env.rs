//! What names stand for while a program is checked and lowered: compile-time
//! values, tensors in the graph being built, model instances and callables,
//! and the scopes that hold them.

use std::collections::HashMap;
use std::rc::Rc;

use kiln_ir::{DType, NodeId, Symbol, TensorType};

use crate::ast::{FnDecl, ModelDecl};
use crate::source::Span;

/// The value of an expression.
#[derive(Clone, Debug)]
pub enum Value {
    /// A node of the graph being built.
    Tensor(NodeId),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// A symbolic dimension, such as the batch size `N`.
    Dim(Symbol),
    DType(DType),
    List(Vec<Value>),
    /// A model instance, by index into the checker's instances.
    Model(usize),
    Callable(Callable),
    /// The value of an expression that already reported an error; every
    /// operation on it quietly gives `Poison` again, so one mistake is
    /// reported once.
    Poison,
}

/// Something that can be called.
#[derive(Clone, Debug)]
pub enum Callable {
    /// A function written in kiln (a top-level `fn`).
    Fn(Rc<FnDecl>),
    /// A model's function, bound to one instance.
    Method(usize, Rc<FnDecl>),
    /// A model definition; calling it instantiates it (only as a member).
    Model(Rc<ModelDecl>),
    /// A builtin primitive, by name.
    Builtin(&'static str),
}

impl Value {
    /// How the value reads in an error message.
    pub fn describe(&self, ty: impl Fn(NodeId) -> TensorType) -> String {
        match self {
            Value::Tensor(id) => format!("a tensor {}", ty(*id)),
            Value::Int(i) => format!("the integer {i}"),
            Value::Float(x) => format!("the number {x:?}"),
            Value::Bool(b) => format!("the boolean {b}"),
            Value::Dim(s) => format!("the symbolic dimension {s}"),
            Value::DType(d) => format!("the dtype {d}"),
            Value::List(items) => format!("a list of {} items", items.len()),
            Value::Model(_) => "a model".into(),
            Value::Callable(Callable::Model(m)) => format!("the model `{}`", m.name.name),
            Value::Callable(_) => "a function".into(),
            Value::Poison => "an erroneous value".into(),
        }
    }
}

/// A variable: its value and where it was bound.
#[derive(Clone, Debug)]
pub struct Binding {
    pub value: Value,
    pub span: Span,
}

/// The scopes of one function body being lowered.
#[derive(Clone, Debug, Default)]
pub struct Env {
    scopes: Vec<HashMap<String, Binding>>,
    /// The model instance whose function this is, if any.
    pub instance: Option<usize>,
    /// What `...` stood for in the function's signature, once bound.
    pub ellipsis: Option<Vec<Value>>,
}

impl Env {
    pub fn new(instance: Option<usize>) -> Env {
        Env { scopes: vec![HashMap::new()], instance, ellipsis: None }
    }

    pub fn push(&mut self) {
        self.scopes.push(HashMap::new());
    }

    pub fn pop(&mut self) {
        self.scopes.pop();
    }

    pub fn bind(&mut self, name: &str, value: Value, span: Span) {
        if let Some(scope) = self.scopes.last_mut() {
            scope.insert(name.to_string(), Binding { value, span });
        }
    }

    pub fn get(&self, name: &str) -> Option<&Binding> {
        self.scopes.iter().rev().find_map(|s| s.get(name))
    }

    /// Rebinds an existing variable in the innermost scope that has it.
    pub fn assign(&mut self, name: &str, value: Value) -> bool {
        for scope in self.scopes.iter_mut().rev() {
            if let Some(b) = scope.get_mut(name) {
                b.value = value;
                return true;
            }
        }
        false
    }

    /// Every name in scope, for suggestions.
    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.scopes.iter().flat_map(|s| s.keys())
    }
}

/// A member of a model instance.
#[derive(Clone, Debug)]
pub enum MemberValue {
    /// A parameter, by its qualified name in the module (`fc1.w`).
    Param(String),
    /// A sub-model instance.
    Sub(usize),
    Fn(Rc<FnDecl>),
    /// A compile-time argument of the model.
    Arg(Value),
}

/// One instantiated model: its definition, its path from the root model
/// (`""` for the root, `fc1` for a member), and its members.
#[derive(Clone, Debug)]
pub struct Instance {
    pub decl: Rc<ModelDecl>,
    pub path: String,
    pub members: HashMap<String, MemberValue>,
}

impl Instance {
    /// The qualified name of a member: `fc1.w` for `w` in instance `fc1`.
    pub fn qualify(&self, name: &str) -> String {
        if self.path.is_empty() { name.to_string() } else { format!("{}.{name}", self.path) }
    }
}
