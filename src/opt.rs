//! `kiln emit opt` and `kiln emit dot`: a function optimized (equality
//! saturation, then fusion), its kernels with their member ops, why each
//! intermediate is materialized, and what it costs before and after.

use std::collections::BTreeMap;
use std::fmt::Write;

use kiln_ir::{Bindings, Function, Module, NodeId};
use kiln_passes::cost::{Machine, Work};
use kiln_passes::fuse::{Group, Merge, Placement};
use kiln_passes::{Compilation, CompileOptions, KernelOrigin, SimplifyReport};

use crate::Error;

/// A function before and after optimization: its compilation, and the
/// unoptimized plan's figures to compare with.
pub struct Optimized {
    /// The pipeline's run, every stage kept (its report taken out).
    pub compilation: Compilation,
    /// What saturation did.
    pub report: SimplifyReport,
    /// The kernel name of each node that has a kernel of its own in the
    /// lowered plan (before GEMM epilogues merge).
    pub kernel_of: BTreeMap<NodeId, String>,
    /// Outputs copied by a kernel of their own.
    pub output_copies: Vec<String>,
    /// GEMM nodes merged with the loop after them: the GEMM's node to the
    /// epilogue's (`merge_gemm_epilogues`).
    pub gemm_into: BTreeMap<NodeId, NodeId>,
    /// Kernels of the unoptimized plan (one per op).
    pub kernels_before: usize,
    /// Bytes and flops of the unoptimized plan.
    pub work_before: Work,
    /// Bytes and flops of the optimized plan.
    pub work_after: Work,
}

impl Optimized {
    /// The function as given.
    pub fn before(&self) -> &Function {
        &self.compilation.source
    }

    /// The function after equality saturation.
    pub fn after(&self) -> &Function {
        &self.compilation.simplified
    }

    /// Where each node of `after` is computed.
    pub fn placement(&self) -> &[Placement] {
        &self.compilation.fusion.placement
    }

    /// The kernel of each materialized node.
    pub fn groups(&self) -> &[Group] {
        &self.compilation.fusion.groups
    }

    /// Reductions computed inside another kernel.
    pub fn merges(&self) -> &[Option<Merge>] {
        &self.compilation.fusion.merges
    }

    /// The machine the cost model priced on.
    pub fn machine(&self) -> &Machine {
        &self.compilation.machine
    }

    /// Kernels of the optimized plan.
    pub fn kernels_after(&self) -> usize {
        self.compilation.plan.kernels.len()
    }
}

/// Optimizes `function` of `module` for `bindings` (the cost model prices
/// symbols bound there at their value): one run of the pipeline, and one
/// unoptimized lowering to compare with.
pub fn optimize(module: &Module, function: &str, bindings: &Bindings) -> Result<Optimized, Error> {
    let mut compilation = kiln_passes::compile(module, function, bindings, &CompileOptions::default())?;
    let unoptimized = kiln_passes::compile(module, function, bindings, &CompileOptions::unoptimized())?;
    let lowered = &compilation.lowered;
    let mut kernel_of = BTreeMap::new();
    let mut output_copies = Vec::new();
    for (origin, kernel) in lowered.origins.iter().zip(&lowered.plan.kernels) {
        match origin {
            KernelOrigin::Node(id) => {
                kernel_of.insert(*id, kernel.name.clone());
            }
            KernelOrigin::OutputCopy(_) => output_copies.push(kernel.name.clone()),
        }
    }
    let mut gemm_into = BTreeMap::new();
    for &k in &compilation.merged_gemms {
        if let (Some(KernelOrigin::Node(gemm)), Some(KernelOrigin::Node(epilogue))) =
            (lowered.origins.get(k), lowered.origins.get(k + 1))
        {
            gemm_into.insert(*gemm, *epilogue);
        }
    }
    let machine = &compilation.machine;
    let work_before = unoptimized.fusion.work(&unoptimized.simplified, machine);
    let work_after = compilation.fusion.work(&compilation.simplified, machine);
    // The default pipeline simplifies, so its report is there.
    let report = compilation.simplify_report.take().ok_or_else(|| Error::Internal("no simplify report".into()))?;
    Ok(Optimized {
        kernels_before: unoptimized.plan.kernels.len(),
        report,
        kernel_of,
        output_copies,
        gemm_into,
        work_before,
        work_after,
        compilation,
    })
}

/// The printed line of each node of `f` (as `kiln emit ir` prints it).
fn node_lines(f: &Function) -> Vec<String> {
    kiln_ir::print_function(f).lines().filter(|l| l.starts_with("  %")).map(|l| l.trim().to_string()).collect()
}

fn why(placement: &Placement) -> String {
    match placement {
        Placement::Inlined => "inlined into its users".into(),
        Placement::Given => "an input or parameter".into(),
        Placement::Output => "returned by the function".into(),
        Placement::Kernel => "not elementwise: a kernel of its own".into(),
        Placement::NeededBy { user, op } => format!("read by `{op}` {user}, which loads it from memory"),
        Placement::Cheaper { users, recompute_us, materialize_us } => format!(
            "computed {users} times per element if inlined (a broadcast counts each element it makes): \
             recomputing costs {recompute_us:.2} µs, materializing {materialize_us:.2} µs"
        ),
        Placement::Unused => "unused".into(),
    }
}

/// The optimized function, kernel by kernel; with `explain`, where each
/// kernel came from, which rules made it, and why its result is materialized.
/// `source` names the file the graph's line numbers refer to.
pub fn render(o: &Optimized, explain: bool, source: &str) -> String {
    let f = o.after();
    let lines = node_lines(f);
    let mut out = String::new();
    let kernels = o.kernels_after();
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    let _ = writeln!(out, "// {}: {kernels} kernel{} (unoptimized: {})", f.name, plural(kernels), o.kernels_before);
    let header = kiln_ir::print_function(f);
    let _ = writeln!(out, "{}", header.lines().next().unwrap_or_default());
    for (id, node) in f.graph.nodes() {
        if matches!(node.op, kiln_ir::Op::Input { .. } | kiln_ir::Op::Param { .. }) {
            let _ = writeln!(out, "  {}", lines[id.index()]);
        }
    }
    for g in o.groups() {
        if o.merges()[g.root.index()].is_some() || o.gemm_into.contains_key(&g.root) {
            continue; // printed inside the kernel that computes it
        }
        let Some(name) = o.kernel_of.get(&g.root) else {
            let _ = writeln!(out, "  {}  // no kernel: a view of its operand", lines[g.root.index()]);
            continue;
        };
        // The groups this kernel computes: an epilogue's reduction first,
        // then its own, then sibling reductions sharing its loops.
        let root = g.root;
        let epilogue_of =
            |h: &&Group| matches!(o.merges()[h.root.index()], Some(Merge::Epilogue { into, .. }) if into == root);
        let sibling_of = |h: &&Group| o.merges()[h.root.index()] == Some(Merge::Sibling { with: root });
        // A GEMM whose rows this kernel finishes comes first.
        let gemm_of = |h: &&Group| o.gemm_into.get(&h.root) == Some(&root);
        let parts: Vec<&Group> = o
            .groups()
            .iter()
            .filter(gemm_of)
            .chain(o.groups().iter().filter(epilogue_of))
            .chain(std::iter::once(g))
            .chain(o.groups().iter().filter(sibling_of))
            .collect();
        let _ = writeln!(out, "  kernel {name} {{");
        if explain {
            let members = parts.iter().flat_map(|p| p.inlined.iter().chain(std::iter::once(&p.root)));
            let mut from: Vec<NodeId> = Vec::new();
            let mut rules: Vec<&str> = Vec::new();
            let mut source_lines: Vec<u32> = Vec::new();
            for m in members {
                source_lines.extend(f.graph.node(*m).line);
                let origin = &o.report.origins[m.index()];
                from.extend(origin.from.iter().copied());
                rules.extend(origin.rules.iter().copied());
            }
            from.sort();
            from.dedup();
            rules.sort();
            rules.dedup();
            source_lines.sort_unstable();
            source_lines.dedup();
            let shown: Vec<String> = source_lines.iter().map(|l| l.to_string()).collect();
            let from: Vec<String> = from.iter().map(|n| n.to_string()).collect();
            let _ = writeln!(
                out,
                "    // source: {}",
                if shown.is_empty() {
                    "no line (IR text)".to_string()
                } else {
                    format!("{source} line{} {}", if shown.len() == 1 { "" } else { "s" }, shown.join(", "))
                }
            );
            let _ = writeln!(
                out,
                "    // from {} of the input graph",
                if from.is_empty() { "no node".into() } else { from.join(" ") }
            );
            let _ = writeln!(
                out,
                "    // rules: {}",
                if rules.is_empty() { "none (as written)".to_string() } else { rules.join(", ") }
            );
            let _ = writeln!(out, "    // result materialized: {}", why(&o.placement()[g.root.index()]));
            for p in &parts {
                match &o.merges()[p.root.index()] {
                    Some(Merge::Epilogue { keep, .. }) => {
                        let stored = if *keep { "also stored for its later readers" } else { "never stored" };
                        let _ = writeln!(
                            out,
                            "    // {} is applied to the accumulator of {} (a reduction epilogue: {} is {stored})",
                            g.root, p.root, p.root
                        );
                    }
                    Some(Merge::Sibling { .. }) => {
                        let _ =
                            writeln!(out, "    // {} is accumulated in the same loops (a sibling reduction)", p.root);
                    }
                    None if gemm_of(p) => {
                        let _ = writeln!(
                            out,
                            "    // {} is the product's epilogue (a GEMM epilogue: run by blocks of rows, \
                             each block's GEMM then its epilogue)",
                            g.root
                        );
                    }
                    None => {}
                }
            }
        }
        let mut printed = vec![false; f.graph.len()];
        for p in &parts {
            for &m in &p.inlined {
                if !std::mem::replace(&mut printed[m.index()], true) {
                    let _ = writeln!(out, "    {}  // inlined", lines[m.index()]);
                }
            }
            let note = match &o.merges()[p.root.index()] {
                None if gemm_of(p) => "  // GEMM, by blocks of rows",
                Some(Merge::Epilogue { keep: false, .. }) => "  // accumulated, not stored",
                Some(Merge::Epilogue { keep: true, .. }) => "  // accumulated and stored",
                Some(Merge::Sibling { .. }) => "  // sibling reduction",
                None => "",
            };
            let _ = writeln!(out, "    {}{note}", lines[p.root.index()]);
        }
        let _ = writeln!(out, "  }}");
    }
    // Outputs that live in an input, a parameter or another output are copied.
    for name in &o.output_copies {
        let _ = writeln!(
            out,
            "  kernel {name} {{ /* copies an output that is an input, a parameter or another output */ }}"
        );
    }
    let outputs: Vec<String> = f.outputs.iter().map(|o| o.to_string()).collect();
    let _ = writeln!(out, "  return {}\n}}", outputs.join(", "));
    out
}

fn megabytes(bytes: f64) -> String {
    format!("{:.3} MB", bytes / 1e6)
}

fn mflops(flops: f64) -> String {
    format!("{:.3} MFLOP", flops / 1e6)
}

/// Kernels, bytes moved and flops before and after, and what the e-graph did.
pub fn render_stats(o: &Optimized) -> String {
    let m = o.machine();
    let kernels_after = o.kernels_after();
    let time = |w: Work, k: usize| m.seconds(w) + k as f64 * m.kernel_overhead;
    let rows = [
        ("kernels", o.kernels_before.to_string(), kernels_after.to_string()),
        ("graph nodes", o.report.nodes_before.to_string(), o.report.nodes_after.to_string()),
        ("bytes moved", megabytes(o.work_before.bytes), megabytes(o.work_after.bytes)),
        ("flops", mflops(o.work_before.flops), mflops(o.work_after.flops)),
        (
            "cost model time",
            format!("{:.1} µs", time(o.work_before, o.kernels_before) * 1e6),
            format!("{:.1} µs", time(o.work_after, kernels_after) * 1e6),
        ),
    ];
    let shown: Vec<String> = m.bindings.iter().map(|(s, v)| format!("{s} = {v}")).collect();
    let mut out = String::new();
    let _ =
        writeln!(out, "{} ({})", o.after().name, if shown.is_empty() { "no symbols".into() } else { shown.join(", ") });
    let _ = writeln!(out, "  {:<16} {:>14} {:>14}", "", "unoptimized", "optimized");
    for (what, before, after) in rows {
        let _ = writeln!(out, "  {what:<16} {before:>14} {after:>14}");
    }
    let r = &o.report;
    let _ = writeln!(
        out,
        "  e-graph: {} nodes in {} classes after {} iterations, stopped: {}, {:.1} ms",
        r.egraph_nodes,
        r.egraph_classes,
        r.iterations,
        r.stop_reason,
        r.time.as_secs_f64() * 1e3
    );
    let applied: Vec<String> = r.applied.iter().map(|(rule, n)| format!("{rule} {n}")).collect();
    let _ = writeln!(out, "  rules applied: {}", if applied.is_empty() { "none".into() } else { applied.join(", ") });
    let _ = writeln!(
        out,
        "  machine: {:.0} GB/s, {:.0} GFLOP/s, {:.1} µs per kernel",
        m.bandwidth / 1e9,
        m.peak_flops / 1e9,
        m.kernel_overhead * 1e6
    );
    out
}

fn dot_label(line: &str) -> String {
    line.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Graphviz of the graph before (one box per op) and after (ops grouped
/// into one cluster per kernel), as two clusters of one digraph.
pub fn render_dot(o: &Optimized) -> String {
    let mut out = String::from("digraph kiln {\n  rankdir=TB;\n  node [shape=box, fontname=monospace, fontsize=10];\n");
    let before_lines = node_lines(o.before());
    let _ = writeln!(out, "  subgraph cluster_before {{\n    label=\"{} before\";", o.before().name);
    for (id, node) in o.before().graph.nodes() {
        let _ = writeln!(out, "    b{} [label=\"{}\"];", id.0, dot_label(&before_lines[id.index()]));
        for a in &node.args {
            let _ = writeln!(out, "    b{} -> b{};", a.0, id.0);
        }
    }
    out.push_str("  }\n");
    let f = o.after();
    let lines = node_lines(f);
    let _ = writeln!(
        out,
        "  subgraph cluster_after {{\n    label=\"{} after: {} kernels\";",
        f.name,
        o.kernel_of.len() + o.output_copies.len()
    );
    for (id, _) in f.graph.nodes() {
        let style = match o.placement()[id.index()] {
            Placement::Inlined => ", style=dashed",
            Placement::Given => ", style=rounded",
            _ => "",
        };
        let _ = writeln!(out, "    a{} [label=\"{}\"{style}];", id.0, dot_label(&lines[id.index()]));
    }
    let mut drawn = vec![false; f.graph.len()];
    for g in o.groups() {
        let Some(name) = o.kernel_of.get(&g.root) else {
            continue;
        };
        let _ = writeln!(out, "    subgraph cluster_{name} {{\n      label=\"{name}\";");
        // An inlined node computed by several kernels is drawn in the first.
        for &m in g.inlined.iter().chain(std::iter::once(&g.root)) {
            if !std::mem::replace(&mut drawn[m.index()], true) {
                let _ = writeln!(out, "      a{};", m.0);
            }
        }
        out.push_str("    }\n");
    }
    for (id, node) in f.graph.nodes() {
        for a in &node.args {
            let _ = writeln!(out, "    a{} -> a{};", a.0, id.0);
        }
    }
    out.push_str("  }\n}\n");
    out
}
