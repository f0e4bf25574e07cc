//! Fusion: which values are computed inside the kernels that use them
//! instead of being written to memory. Elementwise chains become one kernel,
//! elementwise producers are computed inside the reductions that read them
//! (softmax's `exp(x - max)` inside its sum), and broadcasts, permutes and
//! (where exact) reshapes are index arithmetic, not materialized tensors.
//!
//! A node can be inlined when it is an elementwise producer (an elementwise
//! op, a broadcast, a permute, a constant, an iota, a dimension value or
//! random bits, or a reshape of an inlined value),
//! not an output of the function, and every use of it is by an elementwise
//! op, a broadcast, a permute, a reduction, or a reshape that can remap it
//! (its one element, or an operand computed from a flat index). Whether it
//! is inlined is then a choice
//! priced by [`crate::cost`]: a value with one use is always inlined
//! (computing it in its user costs what computing it alone does, minus the
//! round trip through memory); a value with several uses is inlined when
//! recomputing its whole inlined expression in each user costs less than
//! computing it once, writing it and reading it back in each user, plus the
//! kernel that computes it.
//!
//! [`merges`] then puts some reductions inside other kernels: a reduction
//! read only by one elementwise kernel of its shape is accumulated there
//! and that kernel's expression applied to the accumulator (an epilogue);
//! reductions over the same short rows share one loop nest (siblings).
//!
//! Guarantee: the plan computes the same values (an inlined expression is
//! evaluated where its value was loaded, with the same operations; a merged
//! reduction accumulates the same values in the same order), and every node
//! a non-elementwise op reads is materialized.

use kiln_ir::{Function, NodeId, Op};

use crate::cost::{Machine, flops_per_element};

/// Why a node is written to memory (or that it is not).
#[derive(Clone, Debug, PartialEq)]
pub enum Placement {
    /// Computed inside each kernel that uses it.
    Inlined,
    /// An input or a parameter: already in memory.
    Given,
    /// A value the function returns.
    Output,
    /// Its op is a kernel of its own (a product, a reduction, a data movement).
    Kernel,
    /// It is read by an op that needs it in memory.
    NeededBy { user: NodeId, op: String },
    /// Recomputing it for each of its `users` (a broadcast counts once per
    /// element it makes of each one) costs more than materializing it.
    Cheaper { users: usize, recompute_us: f64, materialize_us: f64 },
    /// Nothing uses it.
    Unused,
}

/// Fusion's decisions for one function: each node's placement, the
/// kernel of each materialized node, and the reductions computed inside
/// another kernel. Lowering follows them.
#[derive(Clone, Debug, PartialEq)]
pub struct Fusion {
    pub placement: Vec<Placement>,
    pub groups: Vec<Group>,
    pub merges: Vec<Option<Merge>>,
}

impl Fusion {
    /// Fusion as the cost model decides it on `machine`.
    pub fn of(f: &Function, machine: &Machine) -> Fusion {
        let placement = fuse(f, machine);
        let groups = groups(f, &placement);
        let merges = merges(f, &placement, &groups, machine);
        Fusion { placement, groups, merges }
    }

    /// No fusion: every computed node a kernel of its own, nothing merged.
    pub fn none(f: &Function) -> Fusion {
        let placement = unfused(f);
        let groups = groups(f, &placement);
        Fusion { placement, groups, merges: vec![None; f.graph.len()] }
    }

    /// Bytes moved and flops done by the kernels this fusion makes.
    pub fn work(&self, f: &Function, machine: &Machine) -> crate::cost::Work {
        work(f, &self.groups, &self.merges, machine)
    }
}

/// For each node of `f`, whether and why it is materialized.
pub fn fuse(f: &Function, machine: &Machine) -> Vec<Placement> {
    let n = f.graph.len();
    let mut users: Vec<Vec<NodeId>> = vec![Vec::new(); n];
    for (id, node) in f.graph.nodes() {
        for &a in &node.args {
            users[a.index()].push(id);
        }
    }
    let mut placement = Vec::with_capacity(n);
    // Per element of a node: the flops and the bytes loaded to compute it
    // together with everything inlined into it.
    let mut expr_flops = vec![0.0f64; n];
    let mut expr_bytes = vec![0.0f64; n];
    // Whether a node's inlined expression needs per-axis indices (a
    // broadcast, an iota or a permute in it): a reshape cannot remap those.
    let mut needs_axes = vec![false; n];
    for (id, node) in f.graph.nodes() {
        let i = id.index();
        let mut flops = flops_per_element(&node.op);
        let mut bytes = 0.0;
        for &a in &node.args {
            let arg = f.graph.node(a);
            if placement[a.index()] == Placement::Inlined {
                flops += expr_flops[a.index()];
                bytes += expr_bytes[a.index()];
            } else if machine.elements(&arg.ty.shape) < machine.elements(&node.ty.shape) {
                // A smaller operand (a broadcast source, a random key) is
                // re-read from cache, not memory.
            } else {
                bytes += arg.ty.dtype.size_bytes() as f64;
            }
        }
        // A broadcast recomputes its smaller operand's expression from
        // values in cache, inlined operands included.
        if matches!(node.op, Op::Broadcast { .. })
            && node.args.iter().all(|a| machine.elements(&f.graph.ty(*a).shape) < machine.elements(&node.ty.shape))
        {
            bytes = 0.0;
        }
        expr_flops[i] = flops;
        expr_bytes[i] = bytes;
        needs_axes[i] = matches!(node.op, Op::Broadcast { .. } | Op::Iota { .. } | Op::Permute { .. })
            || node.args.iter().any(|a| placement[a.index()] == Placement::Inlined && needs_axes[a.index()]);
        let one_element = |id: NodeId| machine.elements(&f.graph.ty(id).shape) == 1.0;
        // A reshape is index arithmetic over a flat index, or the one element.
        let remaps = |id: NodeId| one_element(id) || !needs_axes[i];
        let consumes = |u: NodeId| match f.graph.node(u).op {
            Op::Reshape { .. } => remaps(u),
            ref op => consumes_inline(op),
        };
        let enlarges = |u: NodeId| {
            matches!(f.graph.node(u).op, Op::Broadcast { .. })
                && machine.elements(&f.graph.ty(u).shape) > machine.elements(&node.ty.shape)
        };
        let produces = match node.op {
            Op::Reshape { .. } => placement[node.args[0].index()] == Placement::Inlined,
            ref op => produces_inline(op),
        };
        let place = if f.outputs.contains(&id) {
            Placement::Output
        } else if matches!(node.op, Op::Input { .. } | Op::Param { .. }) {
            Placement::Given
        } else if users[i].is_empty() {
            Placement::Unused
        } else if !produces {
            Placement::Kernel
        } else if let Some(&user) = users[i].iter().find(|&&u| !consumes(u)) {
            Placement::NeededBy { user, op: kiln_ir::mnemonic(&f.graph.node(user).op) }
        } else if users[i].len() == 1 && !enlarges(users[i][0]) {
            Placement::Inlined
        } else {
            let elements = machine.elements(&node.ty.shape);
            let once = elements * (flops / machine.peak_flops + bytes / machine.bandwidth);
            let size = node.ty.dtype.size_bytes() as f64;
            // Each user computes it once per element of its own: a
            // broadcast once for every element it makes.
            let uses: f64 = users[i]
                .iter()
                .map(|&u| match f.graph.node(u).op {
                    Op::Broadcast { .. } => machine.elements(&f.graph.ty(u).shape) / elements.max(1.0),
                    _ => 1.0,
                })
                .sum();
            let recompute = uses * once;
            let materialize = once + elements * size * (1.0 + uses) / machine.bandwidth + machine.kernel_overhead;
            if recompute <= materialize {
                Placement::Inlined
            } else {
                Placement::Cheaper {
                    users: uses.round() as usize,
                    recompute_us: recompute * 1e6,
                    materialize_us: materialize * 1e6,
                }
            }
        };
        placement.push(place);
    }
    placement
}

/// Ops computing each element from the same element of their operands.
fn elementwise(op: &Op) -> bool {
    matches!(op, Op::Unary(_) | Op::Binary(_) | Op::Compare(_) | Op::Select | Op::Cast { .. })
}

/// Ops whose value a kernel can compute at any index of its own.
pub fn produces_inline(op: &Op) -> bool {
    elementwise(op)
        || matches!(
            op,
            Op::Broadcast { .. }
                | Op::Permute { .. }
                | Op::Constant { .. }
                | Op::Iota { .. }
                | Op::DimValue { .. }
                | Op::RandomBits { .. }
        )
}

/// Ops whose kernels can compute their operands inline.
pub fn consumes_inline(op: &Op) -> bool {
    elementwise(op) || matches!(op, Op::Broadcast { .. } | Op::Permute { .. } | Op::Reduce { .. })
}

/// One kernel of a fused function: the materialized node it computes, the
/// inlined nodes it computes along the way, and the materialized values it
/// loads.
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    pub root: NodeId,
    /// Inlined producers, in graph order (the root not included).
    pub inlined: Vec<NodeId>,
    /// Materialized nodes (inputs, parameters, other kernels' results) it reads.
    pub reads: Vec<NodeId>,
}

/// The kernel of every node that is computed and materialized, in graph
/// order. Inputs, parameters and unused nodes have none.
pub fn groups(f: &Function, placement: &[Placement]) -> Vec<Group> {
    let mut out = Vec::new();
    for (id, node) in f.graph.nodes() {
        if matches!(placement[id.index()], Placement::Inlined | Placement::Given | Placement::Unused)
            || matches!(node.op, Op::Input { .. } | Op::Param { .. })
        {
            continue;
        }
        let mut inlined = Vec::new();
        let mut reads = Vec::new();
        let mut stack: Vec<NodeId> = node.args.clone();
        while let Some(a) = stack.pop() {
            if placement[a.index()] == Placement::Inlined {
                if !inlined.contains(&a) {
                    inlined.push(a);
                    stack.extend(f.graph.node(a).args.iter().copied());
                }
            } else if !reads.contains(&a) {
                reads.push(a);
            }
        }
        inlined.sort();
        reads.sort();
        out.push(Group { root: id, inlined, reads });
    }
    out
}

/// The work of a fused function under the cost model: each kernel loads
/// what it reads once (siblings share their loads), writes its results
/// once (a reduction whose epilogue is applied in registers writes
/// nothing), and does the flops of its roots and of everything inlined
/// into them.
pub fn work(f: &Function, groups: &[Group], merges: &[Option<Merge>], machine: &Machine) -> crate::cost::Work {
    use std::collections::{BTreeMap, BTreeSet};
    let mut total = crate::cost::Work::default();
    let mut kernels: BTreeMap<NodeId, BTreeSet<NodeId>> = BTreeMap::new();
    for g in groups {
        let node = f.graph.node(g.root);
        let arg_types: Vec<&kiln_ir::TensorType> = node.args.iter().map(|&a| f.graph.ty(a)).collect();
        total.flops += crate::cost::flops(machine, &node.op, &arg_types, &node.ty);
        for &m in &g.inlined {
            let inner = f.graph.node(m);
            total.flops += machine.elements(&inner.ty.shape) * flops_per_element(&inner.op);
        }
        let (host, writes) = match merges.get(g.root.index()).cloned().flatten() {
            Some(Merge::Epilogue { into, keep }) => (into, keep),
            Some(Merge::Sibling { with }) => (with, true),
            None => (g.root, true),
        };
        if writes {
            total.bytes += machine.bytes(&node.ty);
        }
        kernels.entry(host).or_default().extend(g.reads.iter().copied());
    }
    for reads in kernels.values() {
        let absorbed = |r: &NodeId| matches!(merges.get(r.index()), Some(Some(Merge::Epilogue { keep: false, .. })));
        total.bytes += reads.iter().filter(|r| !absorbed(r)).map(|&r| machine.bytes(f.graph.ty(r))).sum::<f64>();
    }
    total
}

/// The placement without fusion: every computed node is a kernel of its own.
pub fn unfused(f: &Function) -> Vec<Placement> {
    let mut used = vec![false; f.graph.len()];
    for (_, node) in f.graph.nodes() {
        for a in &node.args {
            used[a.index()] = true;
        }
    }
    f.graph
        .nodes()
        .map(|(id, node)| match node.op {
            Op::Input { .. } | Op::Param { .. } => Placement::Given,
            _ if f.outputs.contains(&id) => Placement::Output,
            _ if !used[id.index()] => Placement::Unused,
            _ => Placement::Kernel,
        })
        .collect()
}

/// A reduction computed inside another node's kernel.
#[derive(Clone, Debug, PartialEq)]
pub enum Merge {
    /// Accumulated by the kernel of `into`, an elementwise op of the
    /// reduction's shape that reads it and is applied to the accumulator (a
    /// reduction epilogue). With `keep` the reduction has later readers and
    /// is stored too; without, `into` is its only reader and it is never
    /// stored.
    Epilogue { into: NodeId, keep: bool },
    /// Accumulated in the same loops as the reduction `with` (a sibling:
    /// the same operand shape and axes, an operand ready before `with`).
    Sibling { with: NodeId },
}

/// Rows shorter than this are reduced one element at a time anyway, so
/// sharing their loops costs no vectorization.
const SIBLING_ROW_LIMIT: f64 = 16.0;

/// Which reductions are computed inside another kernel.
pub fn merges(f: &Function, placement: &[Placement], groups: &[Group], machine: &Machine) -> Vec<Option<Merge>> {
    let n = f.graph.len();
    let mut merge: Vec<Option<Merge>> = vec![None; n];
    let is_reduce = |id: NodeId| matches!(f.graph.node(id).op, Op::Reduce { .. });
    let mut readers: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (g, group) in groups.iter().enumerate() {
        for r in &group.reads {
            readers[r.index()].push(g);
        }
    }
    // Epilogues: a reduction read by an elementwise kernel of its shape, and
    // by no kernel before that one.
    let mut hosts_epilogue = vec![false; n];
    for (gc, group) in groups.iter().enumerate() {
        let c = f.graph.node(group.root);
        if !elementwise(&c.op) || hosts_epilogue[group.root.index()] {
            continue;
        }
        for &r in &group.reads {
            let read_directly = std::iter::once(&group.root)
                .chain(&group.inlined)
                .all(|m| !f.graph.node(*m).args.contains(&r) || elementwise(&f.graph.node(*m).op));
            if is_reduce(r)
                && matches!(placement[r.index()], Placement::Kernel | Placement::Output)
                && readers[r.index()].iter().all(|&g| g >= gc)
                && f.graph.ty(r).shape == c.ty.shape
                && read_directly
                && merge[r.index()].is_none()
            {
                let keep = readers[r.index()].len() > 1 || placement[r.index()] == Placement::Output;
                merge[r.index()] = Some(Merge::Epilogue { into: group.root, keep });
                hosts_epilogue[group.root.index()] = true;
                break;
            }
        }
    }
    // Siblings: reductions over the same rows of operands of one shape.
    let key = |id: NodeId| match &f.graph.node(id).op {
        Op::Reduce { axes, keepdims, .. } => {
            Some((f.graph.ty(f.graph.node(id).args[0]).shape.clone(), axes.clone(), *keepdims))
        }
        _ => None,
    };
    let group_of = |id: NodeId| groups.iter().find(|g| g.root == id);
    // A reshape of a materialized value is that value's memory: ready when it is.
    let source = |mut id: NodeId| {
        while matches!(f.graph.node(id).op, Op::Reshape { .. } | Op::StopGradient)
            && placement[id.index()] != Placement::Inlined
        {
            id = f.graph.node(id).args[0];
        }
        id
    };
    for (i, host) in groups.iter().enumerate() {
        let h = host.root;
        if !is_reduce(h) || merge[h.index()].is_some() || hosts_epilogue[h.index()] {
            continue;
        }
        let Some((shape, axes, _)) = key(h) else { continue };
        let row: f64 = axes.iter().map(|&a| machine.elements(&kiln_ir::Shape(vec![shape.0[a].clone()]))).product();
        if row >= SIBLING_ROW_LIMIT {
            continue;
        }
        for later in &groups[i + 1..] {
            let s = later.root;
            if key(s) == key(h)
                && merge[s.index()].is_none()
                && !hosts_epilogue[s.index()]
                && group_of(s).is_some_and(|g| {
                    g.reads.iter().map(|&r| source(r)).all(|r| r < h || placement[r.index()] == Placement::Given)
                })
            {
                merge[s.index()] = Some(Merge::Sibling { with: h });
            }
        }
    }
    merge
}
