//! The graph IR text form, printing side. [`crate::parse`] reads it back, and
//! `parse(print(m)) == m` for every valid module.
//!
//! ```text
//! param fc.w: f32[784, 10] = normal(0.0, 0.01)
//!
//! func forward(x: f32[N, 784]) -> (f32[N, 10]) {
//!   %0: f32[N, 784] = input 0
//!   %1: f32[784, 10] = param fc.w
//!   %2: f32[N, 10] = matmul %0, %1
//!   return %2
//! }
//! ```
//!
//! One node per line, numbered in graph order, each with its type. Ops whose
//! payload is a dtype or a shape (const, iota, cast, reshape, broadcast,
//! random_bits) take it from the line's type. This module and the parser are
//! the only places where op spellings exist.

use std::fmt::{self, Write};

use crate::graph::{Function, Init, Module, Node};
use crate::op::{BinaryOp, CompareOp, Literal, Op, ReduceKind, UnaryOp};
use crate::types::write_float;

/// The text of a whole module.
pub fn print_module(module: &Module) -> String {
    module.to_string()
}

/// The text of one function.
pub fn print_function(function: &Function) -> String {
    function.to_string()
}

impl fmt::Display for Module {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.params {
            writeln!(f, "param {}: {} = {}", p.name, p.ty, InitText(&p.init))?;
        }
        for (i, func) in self.functions.iter().enumerate() {
            if i > 0 || !self.params.is_empty() {
                writeln!(f)?;
            }
            write!(f, "{func}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Function {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "func {}(", self.name)?;
        for (i, input) in self.inputs.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}: {}", input.name, input.ty)?;
        }
        f.write_str(") -> (")?;
        for (i, &o) in self.outputs.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            if let Some(node) = self.graph.nodes().nth(o.index()) {
                write!(f, "{}", node.1.ty)?;
            } else {
                write!(f, "<undefined {o}>")?;
            }
        }
        f.write_str(") {\n")?;
        for (id, node) in self.graph.nodes() {
            writeln!(f, "  {id}: {} = {}", node.ty, NodeText(node))?;
        }
        f.write_str("  return")?;
        for (i, o) in self.outputs.iter().enumerate() {
            f.write_str(if i == 0 { " " } else { ", " })?;
            write!(f, "{o}")?;
        }
        f.write_str("\n}\n")
    }
}

struct InitText<'a>(&'a Init);

impl fmt::Display for InitText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Init::Zeros => f.write_str("zeros"),
            Init::Ones => f.write_str("ones"),
            Init::Normal { mean, std } => write!(f, "normal({mean}, {std})"),
            Init::Uniform { low, high } => write!(f, "uniform({low}, {high})"),
            Init::XavierUniform => f.write_str("xavier_uniform"),
            Init::KaimingNormal => f.write_str("kaiming_normal"),
        }
    }
}

/// The right-hand side of a node's line: mnemonic, operands, attributes.
pub struct NodeText<'a>(pub &'a Node);

impl fmt::Display for NodeText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let node = self.0;
        f.write_str(&mnemonic(&node.op))?;
        for (i, a) in node.args.iter().enumerate() {
            f.write_str(if i == 0 { " " } else { ", " })?;
            write!(f, "{a}")?;
        }
        match &node.op {
            Op::Input { index } => write!(f, " {index}"),
            Op::Param { name } => write!(f, " {name}"),
            Op::Constant { value, .. } => {
                f.write_str(" ")?;
                write_literal(f, *value)
            }
            Op::DimValue { symbol } => write!(f, " {symbol}"),
            Op::Iota { axis, .. } => write!(f, " axis={axis}"),
            Op::RandomBits { stream, .. } => write!(f, " stream={stream}"),
            Op::Reduce { axes, keepdims, .. } => write!(f, " axes={} keepdims={keepdims}", List(axes)),
            Op::Permute { perm } => write!(f, " perm={}", List(perm)),
            Op::Slice { axis, start, stop, step } => write!(f, " axis={axis} start={start} stop={stop} step={step}"),
            Op::Pad { padding } => write!(f, " padding={}", Pairs(padding)),
            Op::Concat { axis } | Op::Gather { axis } | Op::ScatterAdd { axis } => write!(f, " axis={axis}"),
            Op::Conv(c) => write!(
                f,
                " stride={} padding={} dilation={} groups={}",
                List(&c.stride),
                Pairs(&c.padding),
                List(&c.dilation),
                c.groups
            ),
            Op::ConvTranspose { conv: c, size } => write!(
                f,
                " stride={} padding={} dilation={} groups={} size={}",
                List(&c.stride),
                Pairs(&c.padding),
                List(&c.dilation),
                c.groups,
                List(size)
            ),
            Op::ReduceWindow { window, stride, padding, .. } => {
                write!(f, " window={} stride={} padding={}", List(window), List(stride), Pairs(padding))
            }
            Op::Unary(_)
            | Op::Binary(_)
            | Op::Compare(_)
            | Op::Select
            | Op::Cast { .. }
            | Op::StopGradient
            | Op::Reshape { .. }
            | Op::Broadcast { .. }
            | Op::MatMul => Ok(()),
        }
    }
}

fn write_literal(f: &mut fmt::Formatter<'_>, value: Literal) -> fmt::Result {
    match value {
        Literal::Float(x) => write_float(f, x.get()),
        Literal::Int(i) => write!(f, "{i}"),
        Literal::Bool(b) => write!(f, "{b}"),
    }
}

/// The op's name in the text form.
pub fn mnemonic(op: &Op) -> String {
    match op {
        Op::Input { .. } => "input".into(),
        Op::Param { .. } => "param".into(),
        Op::Constant { .. } => "const".into(),
        Op::DimValue { .. } => "dim".into(),
        Op::Iota { .. } => "iota".into(),
        Op::RandomBits { .. } => "random_bits".into(),
        Op::Unary(u) => unary_name(*u).into(),
        Op::Binary(b) => binary_name(*b).into(),
        Op::Compare(c) => compare_name(*c).into(),
        Op::Select => "select".into(),
        Op::Cast { .. } => "cast".into(),
        Op::StopGradient => "stop_gradient".into(),
        Op::Reduce { kind, .. } => format!("reduce_{}", reduce_name(*kind)),
        Op::Reshape { .. } => "reshape".into(),
        Op::Broadcast { .. } => "broadcast".into(),
        Op::Permute { .. } => "permute".into(),
        Op::Slice { .. } => "slice".into(),
        Op::Pad { .. } => "pad".into(),
        Op::Concat { .. } => "concat".into(),
        Op::MatMul => "matmul".into(),
        Op::Conv(_) => "conv".into(),
        Op::ConvTranspose { .. } => "conv_transpose".into(),
        Op::ReduceWindow { kind, .. } => format!("reduce_window_{}", reduce_name(*kind)),
        Op::Gather { .. } => "gather".into(),
        Op::ScatterAdd { .. } => "scatter_add".into(),
    }
}

pub(crate) fn unary_name(op: UnaryOp) -> &'static str {
    match op {
        UnaryOp::Neg => "neg",
        UnaryOp::Abs => "abs",
        UnaryOp::Sign => "sign",
        UnaryOp::Exp => "exp",
        UnaryOp::Log => "log",
        UnaryOp::Sqrt => "sqrt",
        UnaryOp::Recip => "recip",
        UnaryOp::Sin => "sin",
        UnaryOp::Cos => "cos",
        UnaryOp::Tanh => "tanh",
        UnaryOp::Floor => "floor",
        UnaryOp::Not => "not",
    }
}

pub(crate) fn binary_name(op: BinaryOp) -> &'static str {
    match op {
        BinaryOp::Add => "add",
        BinaryOp::Sub => "sub",
        BinaryOp::Mul => "mul",
        BinaryOp::Div => "div",
        BinaryOp::Max => "max",
        BinaryOp::Min => "min",
        BinaryOp::Pow => "pow",
        BinaryOp::And => "and",
        BinaryOp::Or => "or",
    }
}

pub(crate) fn compare_name(op: CompareOp) -> &'static str {
    match op {
        CompareOp::Eq => "eq",
        CompareOp::Ne => "ne",
        CompareOp::Lt => "lt",
        CompareOp::Le => "le",
        CompareOp::Gt => "gt",
        CompareOp::Ge => "ge",
    }
}

pub(crate) fn reduce_name(kind: ReduceKind) -> &'static str {
    match kind {
        ReduceKind::Sum => "sum",
        ReduceKind::Max => "max",
    }
}

struct List<'a, T>(&'a [T]);

impl<T: fmt::Display> fmt::Display for List<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('[')?;
        for (i, x) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{x}")?;
        }
        f.write_char(']')
    }
}

struct Pairs<'a>(&'a [(u64, u64)]);

impl fmt::Display for Pairs<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('[')?;
        for (i, (a, b)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "({a}, {b})")?;
        }
        f.write_char(']')
    }
}
