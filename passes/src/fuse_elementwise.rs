//! Which values are computed inside the kernels that use them instead of
//! being written to memory: elementwise chains become one kernel, an
//! elementwise producer is computed inside the reduction that reads it,
//! and broadcasts are index arithmetic, never a materialized tensor.
//!
//! A node is inlined when it is an elementwise producer (an elementwise
//! op, a broadcast, a constant, an iota, a dimension value or random bits),
//! not an output of the function, every use of it is by an elementwise op,
//! a broadcast or a reduction, and inlining duplicates no real work: it
//! has a single use, or it is free to recompute (a constant, an iota, a
//! dimension value, or a broadcast of something materialized or free).
//!
//! Guarantee: the plan computes the same values (each inlined expression is
//! evaluated where its value was loaded, with the same operations), and
//! every node a non-elementwise op reads is still materialized. This is the
//! greedy first step of fusion; the e-graph issue decides fusion by cost.

use kiln_ir::{Function, Op};

/// For each node of `f`, whether its users compute it inline.
pub fn inlined_nodes(f: &Function) -> Vec<bool> {
    let n = f.graph.len();
    let mut uses = vec![0usize; n];
    let mut all_consumers = vec![true; n];
    for (_, node) in f.graph.nodes() {
        for &a in &node.args {
            uses[a.index()] += 1;
            if !consumes_inline(&node.op) {
                all_consumers[a.index()] = false;
            }
        }
    }
    for &o in &f.outputs {
        all_consumers[o.index()] = false;
    }
    let mut inlined = vec![false; n];
    for (id, node) in f.graph.nodes() {
        let free = match &node.op {
            Op::Constant { .. } | Op::Iota { .. } | Op::DimValue { .. } => true,
            Op::Broadcast { .. } => node
                .args
                .iter()
                .all(|a| !inlined[a.index()] || matches!(f.graph.node(*a).op, Op::Constant { .. } | Op::Iota { .. })),
            _ => false,
        };
        inlined[id.index()] = produces_inline(&node.op)
            && uses[id.index()] > 0
            && all_consumers[id.index()]
            && (uses[id.index()] == 1 || free);
    }
    inlined
}

/// Ops computing each element from the same element of their operands.
fn elementwise(op: &Op) -> bool {
    matches!(op, Op::Unary(_) | Op::Binary(_) | Op::Compare(_) | Op::Select | Op::Cast { .. })
}

/// Ops whose value a kernel can compute at any index of its own.
fn produces_inline(op: &Op) -> bool {
    elementwise(op)
        || matches!(
            op,
            Op::Broadcast { .. } | Op::Constant { .. } | Op::Iota { .. } | Op::DimValue { .. } | Op::RandomBits { .. }
        )
}

/// Ops whose kernels can compute their operands inline.
fn consumes_inline(op: &Op) -> bool {
    elementwise(op) || matches!(op, Op::Broadcast { .. } | Op::Reduce { .. })
}
