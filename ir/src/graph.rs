//! Modules, functions and their dataflow graphs.
//!
//! A [`Graph`] is an append-only arena of nodes: a node's operands are always
//! nodes added before it, so the arena order is a topological order, the graph
//! is acyclic by construction, and printing numbers nodes deterministically.
//! (The target design named petgraph's `StableGraph`; the arena gives the same
//! DAG with derived equality and no hash-map order. See docs/ARCHITECTURE.md.)

use std::fmt;

use crate::op::Op;
use crate::types::{F64Bits, TensorType};
use crate::typing::{self, TypeContext};

/// The handle of a node in its function's graph; displays as `%3`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

impl NodeId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "%{}", self.0)
    }
}

/// One operation, its operands and its output type. Equality and hashing
/// ignore `line`: where a node came from is not what it computes.
#[derive(Clone, Debug)]
pub struct Node {
    pub op: Op,
    pub args: Vec<NodeId>,
    pub ty: TensorType,
    /// The line of the root source file this node was lowered from (for a
    /// gradient node, the line of the node it differentiates); none for
    /// nodes parsed from IR text. Not part of the text form.
    pub line: Option<u32>,
}

impl PartialEq for Node {
    fn eq(&self, other: &Node) -> bool {
        self.op == other.op && self.args == other.args && self.ty == other.ty
    }
}

impl Eq for Node {}

impl std::hash::Hash for Node {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (&self.op, &self.args, &self.ty).hash(state);
    }
}

/// A dataflow graph in topological order. Equality compares the nodes.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    nodes: Vec<Node>,
    /// The source line [`Graph::add`] stamps on the nodes it adds.
    line: Option<u32>,
}

impl PartialEq for Graph {
    fn eq(&self, other: &Graph) -> bool {
        self.nodes == other.nodes
    }
}

impl Eq for Graph {}

impl Graph {
    pub fn new() -> Graph {
        Graph::default()
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.index()]
    }

    pub fn ty(&self, id: NodeId) -> &TensorType {
        &self.node(id).ty
    }

    pub fn nodes(&self) -> impl Iterator<Item = (NodeId, &Node)> {
        self.nodes.iter().enumerate().map(|(i, n)| (NodeId(i as u32), n))
    }

    /// Appends a node without checking it; the verifier checks it later.
    /// Parsers and passes that build from already-typed nodes use this.
    pub fn push_unchecked(&mut self, node: Node) -> NodeId {
        let id = NodeId(self.nodes.len() as u32);
        self.nodes.push(node);
        id
    }

    /// Sets the source line of the nodes [`Graph::add`] adds from now on.
    pub fn set_line(&mut self, line: Option<u32>) {
        self.line = line;
    }

    /// Appends `op` applied to `args`, inferring its output type; fails with
    /// the typing rule's message when the operands do not fit the op.
    pub fn add(&mut self, ctx: &TypeContext<'_>, op: Op, args: &[NodeId]) -> Result<NodeId, String> {
        if let Some(bad) = args.iter().find(|a| a.index() >= self.nodes.len()) {
            return Err(format!("operand {bad} is not defined"));
        }
        let arg_types: Vec<&TensorType> = args.iter().map(|&a| self.ty(a)).collect();
        let ty = typing::infer(&op, &arg_types, ctx)?;
        Ok(self.push_unchecked(Node { op, args: args.to_vec(), ty, line: self.line }))
    }
}

/// How a parameter's first value is drawn. Fans follow the layout kiln uses:
/// a 2-D weight is `[inputs, outputs]` (fan-in = dim 0, fan-out = dim 1); a
/// convolution weight is `[out, in, k..]` (fan-in = in * prod(k), fan-out =
/// out * prod(k)); a 1-D tensor has fan-in = fan-out = its length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Init {
    Zeros,
    Ones,
    /// Normal with this mean and standard deviation.
    Normal {
        mean: F64Bits,
        std: F64Bits,
    },
    /// Uniform on `[low, high)`.
    Uniform {
        low: F64Bits,
        high: F64Bits,
    },
    /// Uniform on `±sqrt(6 / (fan_in + fan_out))` (Glorot and Bengio).
    XavierUniform,
    /// Normal with standard deviation `sqrt(2 / fan_in)` (He et al.).
    KaimingNormal,
}

/// A trained parameter of a module, named by its path in the model (`fc1.w`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamDecl {
    pub name: String,
    pub ty: TensorType,
    pub init: Init,
}

/// A named input of a function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputDecl {
    pub name: String,
    pub ty: TensorType,
}

/// A function: typed inputs, a graph, and the nodes it returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Function {
    pub name: String,
    pub inputs: Vec<InputDecl>,
    pub graph: Graph,
    pub outputs: Vec<NodeId>,
}

impl Function {
    pub fn new(name: impl Into<String>, inputs: Vec<InputDecl>) -> Function {
        Function { name: name.into(), inputs, graph: Graph::new(), outputs: Vec::new() }
    }

    pub fn output_types(&self) -> Vec<&TensorType> {
        self.outputs.iter().map(|&o| self.graph.ty(o)).collect()
    }
}

/// A compilation unit: parameters shared by its functions, and the functions.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Module {
    pub params: Vec<ParamDecl>,
    pub functions: Vec<Function>,
}

impl Module {
    pub fn param(&self, name: &str) -> Option<&ParamDecl> {
        self.params.iter().find(|p| p.name == name)
    }

    pub fn function(&self, name: &str) -> Option<&Function> {
        self.functions.iter().find(|f| f.name == name)
    }

    /// The typing context of `function`'s nodes.
    pub fn context<'a>(&'a self, function: &'a Function) -> TypeContext<'a> {
        TypeContext { inputs: &function.inputs, params: &self.params }
    }
}
