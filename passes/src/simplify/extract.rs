//! Extraction with fusion: the e-graph's cheapest graph under the cost
//! model, where "compute this value inside the kernel that uses it" and
//! "write it to memory" are two ways to extract an e-class, priced apart.
//!
//! Every e-class gets two prices: `inline`, the cheapest e-node a kernel
//! can compute at any index of its own (an elementwise op, a broadcast, a
//! constant, ...) with its operands priced the same way, nothing written;
//! and `memory`, the cheapest way to have the value in memory (an e-node
//! that is a kernel of its own, or an inline one plus its write and a
//! launch). An e-node that consumes operands inline (an elementwise op, a
//! reduction) takes each operand at the lesser of its inline price and its
//! memory price plus the read; any other (a product, a convolution) reads
//! it from memory. Prices are the least fixed point over the e-graph, as
//! `egg::Extractor` computes one price per class.
//!
//! Guarantee: the graph returned computes the roots (every e-node of a
//! class computes the class's value), its nodes are each class's choice in
//! the context it is used in (so a class may appear once inline and once
//! in memory, as two e-nodes), and a choice cycle (impossible while every
//! price grows along an edge) makes it return `None` rather than loop. A
//! value used several times is priced once per use, as in any tree
//! extraction; whether such a value is recomputed per use or materialized
//! is decided after extraction by [`crate::fuse`] with the same model.

use std::collections::HashMap;

use egg::Id;
use kiln_ir::{Op, TensorType};

use super::analysis::KGraph;
use super::lang::ENode;
use crate::cost::{Machine, flops};
use crate::fuse::{consumes_inline, produces_inline};

/// A class's two prices and the e-node (index in the class) of each.
#[derive(Clone, Copy, Debug)]
struct Prices {
    inline: (f64, Option<usize>),
    memory: (f64, Option<usize>),
}

const UNPRICED: Prices = Prices { inline: (f64::INFINITY, None), memory: (f64::INFINITY, None) };

/// Where an extracted value lives: computed in its user, or in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Place {
    Inline,
    Memory,
}

/// The two prices of an e-node, from its operands' classes' prices.
fn price(m: &Machine, egraph: &KGraph, node: &ENode, prices: &HashMap<Id, Prices>) -> (f64, f64) {
    let args: Vec<&TensorType> = node.args.iter().map(|&a| &egraph[a].data.ty).collect();
    let Some(out) = egraph.analysis.infer(&node.op, &args) else { return (f64::INFINITY, f64::INFINITY) };
    let class = |a: Id| prices.get(&egraph.find(a)).copied().unwrap_or(UNPRICED);
    // A tiny term per node and operand makes every price grow along an
    // edge (no cycle is ever cheapest) and prefers fewer nodes among equals.
    let tiny = 1e-12 * (1 + node.args.len()) as f64;
    match &node.op {
        Op::Input { .. } | Op::Param { .. } => return (f64::INFINITY, tiny),
        // Index arithmetic: inline over an inline operand, a view of one in memory.
        Op::Reshape { .. } | Op::StopGradient => {
            let c = class(node.args[0]);
            return (c.inline.0 + tiny, c.memory.0 + tiny);
        }
        _ => {}
    }
    let inline = consumes_inline(&node.op);
    let mut parts: Vec<f64> = node
        .args
        .iter()
        .zip(&args)
        .map(|(&a, ty)| {
            let c = class(a);
            let read = c.memory.0 + m.bytes(ty) / m.bandwidth;
            if inline { c.inline.0.min(read) } else { read }
        })
        .collect();
    // Summed in a fixed order, so that operands in either order (`a + b`,
    // `b + a`) price the same to the last bit and the first form wins.
    parts.sort_by(f64::total_cmp);
    let mut seconds = flops(m, &node.op, &args, &out) / m.peak_flops + tiny;
    for part in parts {
        seconds += part;
    }
    let written = seconds + m.bytes(&out) / m.bandwidth + m.kernel_overhead;
    if produces_inline(&node.op) { (seconds, written) } else { (f64::INFINITY, written) }
}

/// The least fixed point of every class's prices.
fn prices(m: &Machine, egraph: &KGraph) -> HashMap<Id, Prices> {
    let mut prices: HashMap<Id, Prices> = egraph.classes().map(|c| (c.id, UNPRICED)).collect();
    // Classes in the order they were made, operands mostly before their
    // users: most prices settle in the first sweep.
    let mut order: Vec<&egg::EClass<ENode, super::analysis::ClassData>> = egraph.classes().collect();
    order.sort_by_key(|c| c.id);
    loop {
        let mut changed = false;
        for class in order.iter().copied() {
            let mut best = prices[&class.id];
            for (k, node) in class.nodes.iter().enumerate() {
                let (inline, memory) = price(m, egraph, node, &prices);
                if inline < best.inline.0 {
                    best.inline = (inline, Some(k));
                }
                if memory < best.memory.0 {
                    best.memory = (memory, Some(k));
                }
            }
            let old = prices[&class.id];
            if best.inline.1 != old.inline.1
                || best.memory.1 != old.memory.1
                || best.inline.0 < old.inline.0
                || best.memory.0 < old.memory.0
            {
                prices.insert(class.id, best);
                changed = true;
            }
        }
        if !changed {
            return prices;
        }
    }
}

/// An e-node chosen for a place, and the places of its operands.
pub struct Choice {
    pub node: ENode,
    pub operands: Vec<(Id, Place)>,
}

/// Chooses e-nodes for the classes the roots need, in memory at the roots:
/// `choose(class, place)` gives the e-node to extract there and where its
/// operands are; `None` where a class has no finite price.
pub struct FusedExtractor<'a> {
    egraph: &'a KGraph,
    machine: &'a Machine,
    prices: HashMap<Id, Prices>,
}

impl<'a> FusedExtractor<'a> {
    pub fn new(egraph: &'a KGraph, machine: &'a Machine) -> FusedExtractor<'a> {
        FusedExtractor { egraph, machine, prices: prices(machine, egraph) }
    }

    pub fn choose(&self, class: Id, place: Place) -> Option<Choice> {
        let class = self.egraph.find(class);
        let p = self.prices.get(&class)?;
        let (cost, k) = match place {
            Place::Inline => p.inline,
            Place::Memory => p.memory,
        };
        if !cost.is_finite() {
            return None;
        }
        let node = self.egraph[class].nodes[k?].clone();
        let operands = match &node.op {
            Op::Reshape { .. } | Op::StopGradient => vec![(node.args[0], place)],
            op => {
                let inline = consumes_inline(op);
                node.args
                    .iter()
                    .map(|&a| {
                        let c = self.prices.get(&self.egraph.find(a)).copied().unwrap_or(UNPRICED);
                        let ty = &self.egraph[a].data.ty;
                        let read = c.memory.0 + self.machine.bytes(ty) / self.machine.bandwidth;
                        let at = if inline && c.inline.0 < read { Place::Inline } else { Place::Memory };
                        (a, at)
                    })
                    .collect()
            }
        };
        Some(Choice { node, operands })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One class with two e-nodes: `x + y` (a kernel computes it inline)
    /// and a slice of `z` (a copy, cheaper to have in memory: no flops).
    /// `exp` takes the class inline as the sum; `concat`, which reads its
    /// operands from memory, takes the slice.
    #[test]
    fn a_class_is_extracted_inline_or_in_memory_by_its_price_in_each() {
        let module = kiln_ir::parse_module(
            "func f(x: f32[1000], y: f32[1000], z: f32[2000]) -> (f32[1000], f32[2000]) {
  %0: f32[1000] = input 0
  %1: f32[1000] = input 1
  %2: f32[2000] = input 2
  %3: f32[1000] = add %0, %1
  %4: f32[1000] = slice %2 axis=0 start=0 stop=1000 step=1
  %5: f32[1000] = exp %3
  %6: f32[2000] = concat %3, %0 axis=0
  return %5, %6
}
",
        )
        .unwrap();
        let f = &module.functions[0];
        let (mut egraph, class_of) = super::super::load(&module, f);
        egraph.union(class_of[3], class_of[4]);
        egraph.rebuild();
        let machine = Machine::default();
        let extractor = FusedExtractor::new(&egraph, &machine);
        let sum = class_of[3];
        let inline = extractor.choose(sum, Place::Inline).unwrap();
        assert!(matches!(inline.node.op, Op::Binary(kiln_ir::BinaryOp::Add)), "{:?}", inline.node.op);
        assert!(inline.operands.iter().all(|(_, p)| *p == Place::Memory), "inputs are read from memory");
        let memory = extractor.choose(sum, Place::Memory).unwrap();
        assert!(matches!(memory.node.op, Op::Slice { .. }), "{:?}", memory.node.op);
        let exp = extractor.choose(class_of[5], Place::Memory).unwrap();
        assert_eq!(exp.operands, vec![(egraph.find(sum), Place::Inline)], "exp computes the sum inline");
        let concat = extractor.choose(class_of[6], Place::Memory).unwrap();
        assert_eq!(concat.operands[0].1, Place::Memory, "concat reads it from memory");
        assert_eq!(extractor.choose(class_of[0], Place::Inline).map(|c| c.node.op), None, "an input is never inline");
    }
}
