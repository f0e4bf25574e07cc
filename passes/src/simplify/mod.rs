//! Equality saturation over a function's graph: the graph goes into an
//! `egg` e-graph, the rules of [`rules`] saturate it under node, iteration
//! and time limits, and the graph with the least cost under [`crate::cost`]
//! comes out.
//!
//! Guarantee: the result computes the same outputs as the input up to
//! floating-point rounding (every rule is an identity, checked by
//! `passes/tests/rules.rs` on random tensors), every node of it types by
//! the IR's rules, and it has no dead nodes. Stopping at a limit only means
//! fewer rewrites were found: the result is still equivalent.

pub mod analysis;
pub mod extract;
pub mod lang;
pub mod rule;
pub mod rules;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use egg::{Id, Runner};
use kiln_ir::{Function, Graph, Module, NodeId};

use crate::cost::Machine;
use analysis::{KGraph, Types};
use lang::ENode;

/// When saturation stops.
#[derive(Clone, Debug)]
pub struct Limits {
    pub nodes: usize,
    pub iterations: usize,
    pub time: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { nodes: 20_000, iterations: 12, time: Duration::from_millis(500) }
    }
}

/// Where a node of the simplified graph came from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Origin {
    /// The nodes of the input graph that compute the same value.
    pub from: Vec<NodeId>,
    /// The rules whose rewrites put this value's e-class together.
    pub rules: Vec<&'static str>,
}

/// What saturation did to one function.
#[derive(Clone, Debug)]
pub struct SimplifyReport {
    pub function: String,
    pub nodes_before: usize,
    pub nodes_after: usize,
    pub egraph_nodes: usize,
    pub egraph_classes: usize,
    pub iterations: usize,
    /// Why the runner stopped: saturated, or which limit it hit.
    pub stop_reason: String,
    pub time: Duration,
    /// How often each rule rewrote something, by rule name.
    pub applied: BTreeMap<String, usize>,
    /// For each node of the result, its origin.
    pub origins: Vec<Origin>,
}

/// Simplifies every function of `module` with the default limits and machine.
pub fn simplify(module: &Module) -> Module {
    let machine = Machine::default();
    let functions =
        module.functions.iter().map(|f| simplify_function(module, f, &Limits::default(), &machine).0).collect();
    Module { params: module.params.clone(), functions }
}

/// Simplifies one function of `module`.
pub fn simplify_function(
    module: &Module,
    f: &Function,
    limits: &Limits,
    machine: &Machine,
) -> (Function, SimplifyReport) {
    let start = Instant::now();
    let (egraph, class_of) = load(module, f);
    let rewrites: Vec<_> = rules::all().into_iter().map(|r| r.to_egg()).collect();
    let runner = Runner::default()
        .with_egraph(egraph)
        .with_node_limit(limits.nodes)
        .with_iter_limit(limits.iterations)
        .with_time_limit(limits.time)
        .run(&rewrites);
    let egraph = &runner.egraph;
    let mut applied = BTreeMap::new();
    for iteration in &runner.iterations {
        for (name, n) in &iteration.applied {
            *applied.entry(name.to_string()).or_insert(0) += n;
        }
    }
    let stop_reason = match &runner.stop_reason {
        Some(egg::StopReason::Saturated) => "saturated".to_string(),
        Some(egg::StopReason::IterationLimit(n)) => format!("iteration limit ({n})"),
        Some(egg::StopReason::NodeLimit(n)) => format!("node limit ({n} e-nodes, limit {})", limits.nodes),
        Some(egg::StopReason::TimeLimit(s)) => format!("time limit ({s} s)"),
        Some(egg::StopReason::Other(s)) => s.clone(),
        None => "not run".to_string(),
    };
    let mut from: HashMap<Id, Vec<NodeId>> = HashMap::new();
    for (i, &c) in class_of.iter().enumerate() {
        from.entry(egraph.find(c)).or_default().push(NodeId(i as u32));
    }
    // A node takes the first source line among the input nodes of its class.
    let lines: HashMap<Id, u32> = from
        .iter()
        .filter_map(|(&c, nodes)| nodes.iter().filter_map(|n| f.graph.node(*n).line).min().map(|l| (c, l)))
        .collect();
    let roots: Vec<Id> = f.outputs.iter().map(|o| egraph.find(class_of[o.index()])).collect();
    let (simplified, chosen) = extract(module, f, egraph, &roots, machine, &lines).unwrap_or_else(|| {
        // Unreachable while every rule keeps types; never worse than the input.
        let chosen = f
            .graph
            .nodes()
            .zip(&class_of)
            .map(|((_, n), &c)| {
                (egraph.find(c), ENode::new(n.op.clone(), n.args.iter().map(|a| class_of[a.index()]).collect()))
            })
            .collect();
        (f.clone(), chosen)
    });
    // Number the result in the input's order where it can: each node ranks
    // by the first input node of its class, a new node right after its operands.
    let rank: Vec<usize> = {
        let mut rank = Vec::with_capacity(chosen.len());
        for ((c, _), (_, node)) in chosen.iter().zip(simplified.graph.nodes()) {
            let own = from.get(c).and_then(|nodes| nodes.first()).map(|n| n.index());
            let after_args = node.args.iter().map(|a| rank[a.index()]).max().unwrap_or(0);
            rank.push(own.unwrap_or(after_args).max(after_args));
        }
        rank
    };
    let (simplified, chosen) = reorder(&simplified, chosen, &rank);
    let canonical = |n: &ENode| ENode::new(n.op.clone(), n.args.iter().map(|&a| egraph.find(a)).collect());
    let origins = chosen
        .iter()
        .map(|(c, best)| {
            let (c, best) = (*c, canonical(best));
            // Rules that equated this class with another, or made the very
            // node extraction chose.
            let mut rules: Vec<&'static str> = Vec::new();
            for fired in &egraph.analysis.fired {
                let made_choice = match &fired.made {
                    None => true,
                    Some(made) => canonical(made) == best,
                };
                if egraph.find(fired.class) == c && made_choice && !rules.contains(&fired.rule) {
                    rules.push(fired.rule);
                }
            }
            Origin { from: from.get(&c).cloned().unwrap_or_default(), rules }
        })
        .collect();
    let report = SimplifyReport {
        function: f.name.clone(),
        nodes_before: f.graph.len(),
        nodes_after: simplified.graph.len(),
        egraph_nodes: egraph.total_size(),
        egraph_classes: egraph.number_of_classes(),
        iterations: runner.iterations.len(),
        stop_reason,
        time: start.elapsed(),
        applied,
        origins,
    };
    (simplified, report)
}

/// The e-graph of `f`'s graph (nothing rewritten yet) and each node's class.
pub fn load(module: &Module, f: &Function) -> (KGraph, Vec<Id>) {
    let mut egraph = KGraph::new(Types { inputs: f.inputs.clone(), params: module.params.clone(), fired: Vec::new() });
    let mut class_of = Vec::with_capacity(f.graph.len());
    for (_, node) in f.graph.nodes() {
        let args = node.args.iter().map(|a| class_of[a.index()]).collect();
        class_of.push(egraph.add(ENode::new(node.op.clone(), args)));
    }
    egraph.rebuild();
    (egraph, class_of)
}

/// `f` renumbered in a topological order that takes the lowest `rank` first.
fn reorder(f: &Function, chosen: Vec<(Id, ENode)>, rank: &[usize]) -> (Function, Vec<(Id, ENode)>) {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let n = f.graph.len();
    let mut waiting: Vec<usize> = f.graph.nodes().map(|(_, node)| node.args.len()).collect();
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (id, node) in f.graph.nodes() {
        for a in &node.args {
            users[a.index()].push(id.index());
        }
    }
    let mut ready: BinaryHeap<Reverse<(usize, usize)>> =
        (0..n).filter(|&i| waiting[i] == 0).map(|i| Reverse((rank[i], i))).collect();
    let mut new_id = vec![NodeId(0); n];
    let mut graph = Graph::new();
    let mut order = Vec::with_capacity(n);
    while let Some(Reverse((_, i))) = ready.pop() {
        let node = f.graph.node(NodeId(i as u32));
        let args = node.args.iter().map(|a| new_id[a.index()]).collect();
        new_id[i] =
            graph.push_unchecked(kiln_ir::Node { op: node.op.clone(), args, ty: node.ty.clone(), line: node.line });
        order.push(i);
        for &u in &users[i] {
            waiting[u] -= 1;
            if waiting[u] == 0 {
                ready.push(Reverse((rank[u], u)));
            }
        }
    }
    let outputs = f.outputs.iter().map(|o| new_id[o.index()]).collect();
    let function = Function { name: f.name.clone(), inputs: f.inputs.clone(), graph, outputs };
    let chosen = order.iter().map(|&i| chosen[i].clone()).collect();
    (function, chosen)
}

/// The cheapest graph computing `roots` under fusion ([`extract::FusedExtractor`]),
/// and the e-class and e-node of each of its nodes.
fn extract(
    module: &Module,
    f: &Function,
    egraph: &KGraph,
    roots: &[Id],
    machine: &Machine,
    lines: &HashMap<Id, u32>,
) -> Option<(Function, Vec<(Id, ENode)>)> {
    use extract::{FusedExtractor, Place};
    let extractor = FusedExtractor::new(egraph, machine);
    let ctx = module.context(f);
    let mut graph = Graph::new();
    let mut chosen = Vec::new();
    let mut node_of: HashMap<(Id, Place), NodeId> = HashMap::new();
    // One graph node per chosen e-node, whichever places chose it.
    let mut of_enode: HashMap<(Id, ENode), NodeId> = HashMap::new();
    let mut started: HashSet<(Id, Place)> = HashSet::new();
    let mut outputs = Vec::with_capacity(roots.len());
    for &root in roots {
        // Post-order walk without recursion: (class, place, children pushed?).
        let mut stack = vec![(root, Place::Memory, false)];
        while let Some((class, place, expanded)) = stack.pop() {
            let class = egraph.find(class);
            if node_of.contains_key(&(class, place)) {
                continue;
            }
            let choice = extractor.choose(class, place)?;
            if expanded {
                let args: Vec<NodeId> = choice
                    .operands
                    .iter()
                    .map(|(a, p)| node_of.get(&(egraph.find(*a), *p)).copied())
                    .collect::<Option<_>>()?;
                let key = (class, choice.node.clone());
                let id = match of_enode.get(&key) {
                    Some(id) => *id,
                    None => {
                        graph.set_line(lines.get(&class).copied());
                        let id = graph.add(&ctx, choice.node.op.clone(), &args).ok()?;
                        chosen.push((class, choice.node.clone()));
                        of_enode.insert(key, id);
                        id
                    }
                };
                node_of.insert((class, place), id);
            } else {
                // Met again below itself: a cycle of choices.
                if !started.insert((class, place)) {
                    return None;
                }
                stack.push((class, place, true));
                stack.extend(choice.operands.iter().map(|&(a, p)| (a, p, false)));
            }
        }
        outputs.push(node_of[&(egraph.find(root), Place::Memory)]);
    }
    graph.set_line(None);
    let function = Function { name: f.name.clone(), inputs: f.inputs.clone(), graph, outputs };
    Some((function, chosen))
}
