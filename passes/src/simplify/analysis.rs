//! The e-class analysis: every e-class knows its tensor type (dtype and
//! shape) and, when it holds a splat constant, the constant's value.
//!
//! Types come from the IR's own typing rules ([`kiln_ir::infer`]), so the
//! e-graph and the verifier agree on what every node is. Rules only add
//! e-nodes whose inferred type equals the matched class's type (checked in
//! [`super::rule`]), so all e-nodes of a class share one type.

use egg::{DidMerge, EGraph, Id};
use kiln_ir::{DType, InputDecl, Literal, Op, ParamDecl, TensorType, TypeContext};

use super::lang::ENode;

/// The e-graph of one function.
pub type KGraph = EGraph<ENode, Types>;

/// What the analysis needs to type leaves: the function's inputs and the
/// module's parameters.
#[derive(Clone, Debug, Default)]
pub struct Types {
    pub inputs: Vec<InputDecl>,
    pub params: Vec<ParamDecl>,
    /// Every union a rule made (`kiln emit opt --explain` reports them).
    pub fired: Vec<Fired>,
}

/// A rewrite that changed the e-graph.
#[derive(Clone, Debug)]
pub struct Fired {
    /// The class of the term the rule added.
    pub class: Id,
    pub rule: &'static str,
    /// The e-node at the root of that term, or none when the rule said two
    /// existing classes are equal.
    pub made: Option<ENode>,
}

impl Types {
    /// The type of `op` applied to classes of types `args`, if it is well typed.
    pub fn infer(&self, op: &Op, args: &[&TensorType]) -> Option<TensorType> {
        let ctx = TypeContext { inputs: &self.inputs, params: &self.params };
        kiln_ir::infer(op, args, &ctx).ok()
    }
}

/// What every e-class knows.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassData {
    pub ty: TensorType,
    /// The value of every element, when the class holds a splat constant.
    pub splat: Option<Literal>,
    /// False only if an e-node failed to type, which the rule applier rules
    /// out; extraction never picks a node of such a class.
    pub well_typed: bool,
}

impl egg::Analysis<ENode> for Types {
    type Data = ClassData;

    fn make(egraph: &mut KGraph, enode: &ENode, _id: Id) -> ClassData {
        let args: Vec<&TensorType> = enode.args.iter().map(|&a| &egraph[a].data.ty).collect();
        let splat = match enode.op {
            Op::Constant { value, .. } => Some(value),
            _ => None,
        };
        match egraph.analysis.infer(&enode.op, &args) {
            Some(ty) => ClassData { ty, splat, well_typed: true },
            None => ClassData { ty: TensorType::scalar(DType::Bool), splat: None, well_typed: false },
        }
    }

    fn merge(&mut self, a: &mut ClassData, b: ClassData) -> DidMerge {
        let mut changed_a = false;
        if a.splat.is_none() && b.splat.is_some() {
            a.splat = b.splat;
            changed_a = true;
        }
        if a.well_typed && !b.well_typed {
            a.well_typed = false;
            changed_a = true;
        }
        DidMerge(changed_a, *a != b)
    }
}
