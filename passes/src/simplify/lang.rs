//! The e-graph language: one e-node per graph IR op.
//!
//! An [`ENode`] is an [`Op`] (payload included: shapes, axes, constants) and
//! its operand e-classes, so the e-graph speaks exactly the IR's closed op
//! enum and nothing is lost on the way in or out. Two e-nodes match when
//! their ops are equal, payloads included.

use std::fmt;

use egg::{Id, Language};
use kiln_ir::Op;

/// An op applied to e-classes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ENode {
    pub op: Op,
    pub args: Vec<Id>,
}

impl ENode {
    pub fn new(op: Op, args: Vec<Id>) -> ENode {
        ENode { op, args }
    }
}

impl Language for ENode {
    type Discriminant = Op;

    fn discriminant(&self) -> Op {
        self.op.clone()
    }

    fn matches(&self, other: &Self) -> bool {
        self.op == other.op && self.args.len() == other.args.len()
    }

    fn children(&self) -> &[Id] {
        &self.args
    }

    fn children_mut(&mut self) -> &mut [Id] {
        &mut self.args
    }
}

impl fmt::Display for ENode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&kiln_ir::mnemonic(&self.op))
    }
}
