//! Lowering graph IR to kernel IR: one kernel per op that is not computed
//! inside its users (`fuse`).
//!
//! Needs: a verified module, a function of it, and a value for every symbol
//! of the function's input types. Guarantees: a verified [`Plan`] whose
//! input, parameter and output buffers follow the function's inputs, the
//! module's parameters and the function's outputs; running it computes what
//! the graph interpreter computes (the differential tests hold it to that).
//! Reshapes and `stop_gradient` alias their operand's buffer, as do permutes
//! only matrix products read (the products read them transposed); inlined
//! values have no buffer: the elementwise kernels and reductions that use
//! them compute them where they would have loaded them; every other op
//! gets one kernel writing a fresh buffer. Float matrix products become
//! GEMM calls (or loop nests, [`GemmLowering`]); convolution and pooling
//! read a padded copy of their input, so that every access stays affine and
//! in bounds, and a one-group float convolution is im2col plus GEMM
//! ([`ConvLowering`]). Outer loops are marked parallel; the innermost loop
//! of an f32 elementwise kernel or reduction asks for four lanes.

use std::collections::BTreeMap;

use kiln_ir::kernel::{
    AccId, Affine, BufferDecl, BufferId, BufferRole, KExpr, KStmt, Kernel, MatrixRef, Plan, RuntimeCall, VarId,
    verify_plan,
};
use kiln_ir::{Bindings, ConvAttrs, DType, Function, Literal, Module, NodeId, Op, ReduceKind};

use crate::fuse::Merge;

/// Why a function could not be lowered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LowerError {
    #[error("no function named `{0}`")]
    UnknownFunction(String),
    #[error("symbol {0} has no value: bind every symbolic dimension of the inputs")]
    Unbound(String),
    #[error("internal error: the lowered plan does not verify: {0}")]
    Invalid(String),
}

/// How a float convolution with one group becomes kernels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ConvLowering {
    /// One loop nest: each output element sums its window.
    Direct,
    /// Copy each window into a column matrix (im2col), then one GEMM per
    /// batch element: weights `[c_out, c_in * window]` times columns
    /// `[c_in * window, output positions]`. The default: faster in
    /// `cargo bench --bench kiln -- conv` (see docs/performance.md).
    #[default]
    Im2col,
}

/// How a float matrix product becomes kernels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GemmLowering {
    /// A call into the runtime's GEMM (the JIT's choice).
    #[default]
    Call,
    /// Loop nests in the plan itself, `c[i, :] += a[i, l] * b[l, :]` with
    /// the row loop innermost: code with no runtime to call, for
    /// ahead-of-time libraries.
    Loops,
}

/// Choices lowering makes; the defaults are the measured best.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LowerOptions {
    pub conv: ConvLowering,
    pub gemm: GemmLowering,
    /// Compute elementwise producers inside the kernels that use them
    /// (`fuse`); without it, one kernel per op.
    pub fuse: bool,
    /// Optimize the graph by equality saturation (`simplify`) first.
    pub simplify: bool,
    /// With `fuse`: merge each GEMM with the row-local loop after it
    /// (`merge_gemm_epilogues`).
    pub gemm_epilogues: bool,
}

impl Default for LowerOptions {
    fn default() -> LowerOptions {
        LowerOptions {
            conv: ConvLowering::default(),
            gemm: GemmLowering::default(),
            fuse: true,
            simplify: true,
            gemm_epilogues: true,
        }
    }
}

/// Lowers `function` of `module`, specialized to `bindings`, to a plan.
pub fn lower_to_kernels(module: &Module, function: &str, bindings: &Bindings) -> Result<Plan, LowerError> {
    lower_to_kernels_with(module, function, bindings, LowerOptions::default())
}

/// [`lower_to_kernels`] with explicit choices (benchmarks compare them).
pub fn lower_to_kernels_with(
    module: &Module,
    function: &str,
    bindings: &Bindings,
    options: LowerOptions,
) -> Result<Plan, LowerError> {
    lower_to_kernels_deciding_at(module, function, bindings, bindings, options)
}

/// [`lower_to_kernels_with`], with the size-dependent choices (the e-graph's
/// extraction, fusion and GEMM epilogue merges, whose cost model weighs
/// work at a batch size) taken at `decide` rather than at `bindings`: the
/// plans of one function lowered at several sizes with the same `decide`
/// fuse alike, which is what lets the PTX backend find the numbers that
/// vary with a symbol (`nvptx::generic`).
pub fn lower_to_kernels_deciding_at(
    module: &Module,
    function: &str,
    bindings: &Bindings,
    decide: &Bindings,
    options: LowerOptions,
) -> Result<Plan, LowerError> {
    let f = module.function(function).ok_or_else(|| LowerError::UnknownFunction(function.to_string()))?;
    let machine = crate::cost::Machine { bindings: decide.clone(), ..crate::cost::Machine::default() };
    let simplified;
    let f = if options.simplify {
        simplified = crate::simplify_function(module, f, &crate::Limits::default(), &machine).0;
        &simplified
    } else {
        f
    };
    let mut shapes = Vec::with_capacity(f.graph.len());
    for (_, node) in f.graph.nodes() {
        let shape = node.ty.shape.resolve(bindings).map_err(|s| LowerError::Unbound(s.to_string()))?;
        shapes.push(shape.into_iter().map(|d| d as u64).collect::<Vec<u64>>());
    }
    let (inlined, merge) = if options.fuse {
        let placement = crate::fuse::fuse(f, &machine);
        let groups = crate::fuse::groups(f, &placement);
        let merge = crate::fuse::merges(f, &placement, &groups, &machine);
        (placement.iter().map(|p| *p == crate::fuse::Placement::Inlined).collect(), merge)
    } else {
        (vec![false; f.graph.len()], vec![None; f.graph.len()])
    };
    let mut l = Lowering {
        f,
        bindings,
        shapes,
        buffers: Vec::new(),
        node_buffer: Vec::new(),
        kernels: Vec::new(),
        next_var: 0,
        next_acc: 0,
        options,
        // A product reads a permute's operand in place only if it is in memory.
        transposed: transposed_views(f)
            .into_iter()
            .zip(f.graph.nodes())
            .map(|(t, (_, node))| t && node.args.iter().all(|a| !inlined[a.index()]))
            .collect(),
        inlined,
        merge,
        acc_of: BTreeMap::new(),
    };
    l.assign_buffers();
    for (id, node) in f.graph.nodes() {
        l.next_var = 0;
        l.next_acc = 0;
        let body = l.node(id, &node.op)?;
        if !body.is_empty() {
            l.kernels.push(Kernel { name: format!("k{}_{}", id.0, kiln_ir::mnemonic(&node.op)), body });
        }
    }
    l.bind_outputs();
    let mut plan = Plan { name: function.to_string(), buffers: l.buffers, kernels: l.kernels };
    if options.fuse && options.gemm_epilogues {
        plan = crate::merge_gemm_epilogues::merge_gemm_epilogues(plan);
    }
    verify_plan(&plan).map_err(|e| LowerError::Invalid(format!("{e}\n{plan}")))?;
    Ok(plan)
}

struct Lowering<'a> {
    f: &'a Function,
    bindings: &'a Bindings,
    shapes: Vec<Vec<u64>>,
    buffers: Vec<BufferDecl>,
    node_buffer: Vec<BufferId>,
    kernels: Vec<Kernel>,
    next_var: u32,
    next_acc: u32,
    options: LowerOptions,
    /// Permutes that swap the last two axes of a float matrix and are read
    /// only by matrix products: no kernel, the products read their operand
    /// transposed through strides.
    transposed: Vec<bool>,
    /// Values computed inside the kernels that use them (no buffer, no
    /// kernel of their own); see `fuse`.
    inlined: Vec<bool>,
    /// Reductions computed in another node's kernel (`fuse::merges`).
    merge: Vec<Option<Merge>>,
    /// Reductions whose value is an accumulator of the kernel being built.
    acc_of: BTreeMap<NodeId, AccId>,
}

/// Where an inline expression is evaluated: at element `Flat(i)` of a
/// value laid out like the kernel's output (same shape), or at one index
/// per axis of the value's own shape.
#[derive(Clone, Debug)]
enum At {
    Flat(Affine),
    Axes(Vec<Affine>),
}

/// Whether `perm` swaps the last two axes and keeps the others.
fn swaps_last_two(perm: &[usize]) -> bool {
    let r = perm.len();
    r >= 2 && perm[r - 2] == r - 1 && perm[r - 1] == r - 2 && perm[..r - 2].iter().enumerate().all(|(k, &p)| k == p)
}

/// For each node, whether it is a permute the matrix products reading it
/// can absorb (see `Lowering::transposed`).
fn transposed_views(f: &Function) -> Vec<bool> {
    let mut only_matmuls = vec![true; f.graph.len()];
    for (_, node) in f.graph.nodes() {
        for &a in &node.args {
            if !matches!(node.op, Op::MatMul) || !node.ty.dtype.is_float() {
                only_matmuls[a.index()] = false;
            }
        }
    }
    for &o in &f.outputs {
        only_matmuls[o.index()] = false;
    }
    f.graph
        .nodes()
        .map(|(id, node)| matches!(&node.op, Op::Permute { perm } if swaps_last_two(perm)) && only_matmuls[id.index()])
        .collect()
}

fn strides(shape: &[u64]) -> Vec<i64> {
    let mut s = vec![1i64; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1] as i64;
    }
    s
}

fn numel(shape: &[u64]) -> u64 {
    shape.iter().product()
}

/// `sum(vars[k] * strides[k])`.
fn row_major(vars: &[VarId], strides: &[i64]) -> Affine {
    vars.iter().zip(strides).fold(Affine::default(), |a, (&v, &s)| a.plus_term(v, s))
}

fn load(buffer: BufferId, index: Affine) -> KExpr {
    KExpr::Load { buffer, index }
}

impl Lowering<'_> {
    fn new_buffer(&mut self, role: BufferRole, dtype: DType, len: u64) -> BufferId {
        self.buffers.push(BufferDecl { role, dtype, len });
        BufferId(self.buffers.len() as u32 - 1)
    }

    fn assign_buffers(&mut self) {
        let mut inputs: BTreeMap<u32, BufferId> = BTreeMap::new();
        let mut params: BTreeMap<String, BufferId> = BTreeMap::new();
        for (id, node) in self.f.graph.nodes() {
            let (dtype, len) = (node.ty.dtype, numel(&self.shapes[id.index()]));
            let buffer = match &node.op {
                Op::Input { index } => match inputs.get(index) {
                    Some(&b) => b,
                    None => {
                        let b = self.new_buffer(BufferRole::Input(*index), dtype, len);
                        inputs.insert(*index, b);
                        b
                    }
                },
                Op::Param { name } => match params.get(name) {
                    Some(&b) => b,
                    None => {
                        let b = self.new_buffer(BufferRole::Param(name.clone()), dtype, len);
                        params.insert(name.clone(), b);
                        b
                    }
                },
                _ if self.inlined[id.index()]
                    || matches!(self.merge[id.index()], Some(Merge::Epilogue { keep: false, .. })) =>
                {
                    BufferId(u32::MAX)
                }
                // A reshape of an inlined value is computed by its own kernel.
                Op::Reshape { .. } if self.inlined[node.args[0].index()] => {
                    self.new_buffer(BufferRole::Temp, dtype, len)
                }
                Op::Reshape { .. } | Op::StopGradient => self.node_buffer[node.args[0].index()],
                Op::Permute { .. } if self.transposed[id.index()] => self.node_buffer[node.args[0].index()],
                // Never read through a buffer (`value_of` computes it).
                _ if self.inlined[id.index()] => BufferId(u32::MAX),
                _ => self.new_buffer(BufferRole::Temp, dtype, len),
            };
            self.node_buffer.push(buffer);
        }
    }

    /// Makes each output's buffer an output buffer, copying where the value
    /// lives in an input, a parameter or an earlier output.
    fn bind_outputs(&mut self) {
        for (position, &o) in self.f.outputs.iter().enumerate() {
            let b = self.node_buffer[o.index()];
            if self.buffers[b.0 as usize].role == BufferRole::Temp {
                self.buffers[b.0 as usize].role = BufferRole::Output(position as u32);
                continue;
            }
            let decl = self.buffers[b.0 as usize].clone();
            let out = self.new_buffer(BufferRole::Output(position as u32), decl.dtype, decl.len);
            let v = VarId(0);
            let store = KStmt::Store { buffer: out, index: Affine::var(v), value: load(b, Affine::var(v)) };
            let body = vec![KStmt::For { var: v, extent: decl.len, parallel: true, vector: 1, body: vec![store] }];
            let body = Self::ask_for_lanes(body, decl.dtype);
            self.kernels.push(Kernel { name: format!("copy_output_{position}"), body });
        }
    }

    fn vars(&mut self, n: usize) -> Vec<VarId> {
        (0..n)
            .map(|_| {
                self.next_var += 1;
                VarId(self.next_var - 1)
            })
            .collect()
    }

    fn acc(&mut self) -> AccId {
        self.next_acc += 1;
        AccId(self.next_acc - 1)
    }

    /// Loops over `extents` around `inner`, the outermost parallel. A loop
    /// of one iteration is left out and its variable read as 0, so that the
    /// parallel loop is one with iterations to share (a convolution's
    /// weight gradient has a batch of one).
    fn nest(vars: &[VarId], extents: &[u64], inner: Vec<KStmt>) -> Vec<KStmt> {
        let mut body = inner;
        for (&var, _) in vars.iter().zip(extents).filter(|(_, e)| **e == 1) {
            body.iter_mut().for_each(|s| without_var(s, var));
        }
        let kept: Vec<(VarId, u64)> =
            vars.iter().copied().zip(extents.iter().copied()).filter(|(_, e)| *e != 1).collect();
        for (k, &(var, extent)) in kept.iter().enumerate().rev() {
            body = vec![KStmt::For { var, extent, parallel: k == 0, vector: 1, body }];
        }
        body
    }

    /// Asks for four lanes on the innermost loop of `body`, a loop nest
    /// around one store of `dtype` values, when it is f32 and that loop has
    /// at least four iterations. The backend widens the loop where its
    /// accesses are contiguous along it and keeps it scalar otherwise.
    fn ask_for_lanes(mut body: Vec<KStmt>, dtype: DType) -> Vec<KStmt> {
        if dtype != DType::F32 {
            return body;
        }
        let mut level = &mut body;
        while let Some(KStmt::For { body: inner, vector, extent, .. }) = level.first_mut() {
            match inner.as_slice() {
                [KStmt::For { .. }] => level = inner,
                [KStmt::Store { .. }] if *extent >= 4 => {
                    *vector = 4;
                    break;
                }
                _ => break,
            }
        }
        body
    }

    /// Asks for four lanes on the innermost loop of `body`, a loop nest
    /// around reductions (f32 accumulators declared, one loop updating
    /// them, stores of their results), when that loop has at least four
    /// iterations: neighbouring outputs, a pooling window's or a row sum's,
    /// reduce side by side. The backend widens the loop where its reads
    /// and stores are contiguous along it.
    fn ask_for_column_lanes(mut body: Vec<KStmt>) -> Vec<KStmt> {
        let mut level = &mut body;
        while let Some(KStmt::For { var, body: inner, vector, extent, .. }) = level.first_mut() {
            if let [KStmt::For { .. }] = inner.as_slice() {
                level = inner;
                continue;
            }
            let declared = inner.iter().take_while(|s| matches!(s, KStmt::AccInit { .. })).count();
            let f32_accs = inner[..declared].iter().all(|s| matches!(s, KStmt::AccInit { dtype: DType::F32, .. }));
            if declared > 0 && f32_accs && *extent >= 4 && inner.iter().all(|s| moves_by_one(s, *var)) {
                *vector = 4;
            }
            break;
        }
        body
    }

    /// A kernel body storing `value(vars)` at every element of `out_shape`.
    fn elementwise(&mut self, out: BufferId, out_shape: &[u64], value: impl FnOnce(&[VarId]) -> KExpr) -> Vec<KStmt> {
        let vars = self.vars(out_shape.len());
        let index = row_major(&vars, &strides(out_shape));
        let store = KStmt::Store { buffer: out, index, value: value(&vars) };
        let dtype = self.buffers[out.0 as usize].dtype;
        Self::ask_for_lanes(Self::nest(&vars, out_shape, vec![store]), dtype)
    }

    /// The kernel of an elementwise node, computing it and every value
    /// inlined into it: one flat loop when all of them have its shape, a
    /// loop per axis (the innermost asking for four lanes) when a broadcast
    /// or an iota needs per-axis indices.
    fn fused_elementwise(
        &mut self,
        id: NodeId,
        out: BufferId,
        shape: &[u64],
        dtype: DType,
    ) -> Result<Vec<KStmt>, LowerError> {
        if !self.needs_axes(id) {
            let i = self.vars(1)[0];
            let value = self.expr_of(id, &At::Flat(Affine::var(i)))?;
            let len = numel(shape);
            let vector = if dtype == DType::F32 && len >= 4 { 4 } else { 1 };
            let store = KStmt::Store { buffer: out, index: Affine::var(i), value };
            return Ok(vec![KStmt::For { var: i, extent: len, parallel: true, vector, body: vec![store] }]);
        }
        let vars = self.vars(shape.len());
        let value = self.expr_of(id, &At::Axes(vars.iter().map(|&v| Affine::var(v)).collect()))?;
        let store = KStmt::Store { buffer: out, index: row_major(&vars, &strides(shape)), value };
        Ok(Self::ask_for_lanes(Self::nest(&vars, shape, vec![store]), dtype))
    }

    /// Whether computing `id` with what is inlined into it needs per-axis
    /// indices (a broadcast or an iota among them).
    fn needs_axes(&self, id: NodeId) -> bool {
        let node = self.f.graph.node(id);
        if matches!(node.op, Op::Reshape { .. }) {
            // Evaluated at a flat index (or its one element), whatever its operand is.
            return false;
        }
        matches!(node.op, Op::Broadcast { .. } | Op::Iota { .. } | Op::Permute { .. })
            || node.args.iter().any(|&a| self.inlined[a.index()] && self.needs_axes(a))
    }

    /// The value of `node` at `at`: loaded from its buffer, or computed
    /// inline when it is inlined.
    fn value_of(&mut self, node: NodeId, at: &At) -> Result<KExpr, LowerError> {
        if let Some(&acc) = self.acc_of.get(&node) {
            return Ok(KExpr::Acc(acc));
        }
        if self.inlined[node.index()] {
            return self.expr_of(node, at);
        }
        let buffer = self.node_buffer[node.index()];
        Ok(load(buffer, self.element(node, at)))
    }

    /// The row-major element index of `at` in `node`'s shape.
    fn element(&self, node: NodeId, at: &At) -> Affine {
        match at {
            At::Flat(i) => i.clone(),
            At::Axes(axes) => {
                let s = strides(&self.shapes[node.index()]);
                axes.iter().zip(&s).fold(Affine::default(), |acc, (a, &st)| {
                    a.terms.iter().fold(acc.plus(a.constant * st), |acc, &(v, c)| acc.plus_term(v, c * st))
                })
            }
        }
    }

    /// The expression computing elementwise `node` at `at`, its operands
    /// loaded or computed inline.
    fn expr_of(&mut self, id: NodeId, at: &At) -> Result<KExpr, LowerError> {
        let node = self.f.graph.node(id);
        let args = node.args.clone();
        let operand = |l: &mut Self, k: usize| l.value_of(args[k], at).map(Box::new);
        Ok(match &node.op {
            Op::Constant { value, dtype, .. } => KExpr::Const { value: *value, dtype: *dtype },
            Op::DimValue { symbol } => {
                let value =
                    self.bindings.get(symbol).copied().ok_or_else(|| LowerError::Unbound(symbol.to_string()))?;
                KExpr::Const { value: Literal::Int(value as i64), dtype: DType::I64 }
            }
            Op::Iota { axis, dtype, .. } => match at {
                At::Axes(axes) => KExpr::Index { index: axes[*axis].clone(), dtype: *dtype },
                At::Flat(_) => return Err(LowerError::Invalid("an iota needs per-axis indices".into())),
            },
            Op::RandomBits { stream, dtype, .. } => KExpr::RandomBits {
                key: Box::new(self.value_of(args[0], &At::Flat(Affine::constant(0)))?),
                stream: *stream,
                counter: self.element(id, at),
                dtype: *dtype,
            },
            Op::Unary(u) => KExpr::Unary(*u, operand(self, 0)?),
            Op::Binary(b) => KExpr::Binary(*b, operand(self, 0)?, operand(self, 1)?),
            Op::Compare(c) => KExpr::Compare(*c, operand(self, 0)?, operand(self, 1)?),
            Op::Select => KExpr::Select(operand(self, 0)?, operand(self, 1)?, operand(self, 2)?),
            Op::Cast { to } => KExpr::Cast(*to, operand(self, 0)?),
            Op::Broadcast { .. } => {
                let At::Axes(axes) = at else {
                    return Err(LowerError::Invalid("a broadcast needs per-axis indices".into()));
                };
                let from = self.shapes[args[0].index()].clone();
                let offset = axes.len() - from.len();
                let inner = (0..from.len())
                    .map(|j| if from[j] == 1 { Affine::constant(0) } else { axes[offset + j].clone() })
                    .collect();
                self.value_of(args[0], &At::Axes(inner))?
            }
            // Output axis `k` is the operand's axis `perm[k]`.
            Op::Permute { perm } => {
                let At::Axes(axes) = at else {
                    return Err(LowerError::Invalid("a permute needs per-axis indices".into()));
                };
                let mut inner = vec![Affine::constant(0); axes.len()];
                for (k, &p) in perm.iter().enumerate() {
                    inner[p] = axes[k].clone();
                }
                self.value_of(args[0], &At::Axes(inner))?
            }
            // Fusion inlines a reshape only where this is exact: the one
            // element, or an operand computed from a flat index.
            Op::Reshape { .. } if self.shapes[id.index()].iter().product::<u64>() == 1 => {
                let zeros = vec![Affine::constant(0); self.shapes[args[0].index()].len()];
                self.value_of(args[0], &At::Axes(zeros))?
            }
            Op::Reshape { .. } => {
                let flat = self.element(id, at);
                self.value_of(args[0], &At::Flat(flat))?
            }
            op => return Err(LowerError::Invalid(format!("{} is not elementwise", kiln_ir::mnemonic(op)))),
        })
    }

    fn node(&mut self, id: NodeId, op: &Op) -> Result<Vec<KStmt>, LowerError> {
        let node = self.f.graph.node(id);
        let out = self.node_buffer[id.index()];
        let shape = self.shapes[id.index()].clone();
        let arg = |k: usize| node.args[k];
        let buf = |l: &Self, k: usize| l.node_buffer[arg(k).index()];
        let dtype = node.ty.dtype;
        Ok(match op {
            _ if self.inlined[id.index()] || self.merge[id.index()].is_some() => Vec::new(),
            _ if let Some(r) = self.epilogue_of(id) => self.reduce_many(&[r], Some(id))?,
            Op::Reshape { .. } if self.inlined[arg(0).index()] => self.fused_elementwise(id, out, &shape, dtype)?,
            Op::Input { .. } | Op::Param { .. } | Op::Reshape { .. } | Op::StopGradient => Vec::new(),
            Op::Constant { .. }
            | Op::DimValue { .. }
            | Op::Iota { .. }
            | Op::RandomBits { .. }
            | Op::Unary(_)
            | Op::Binary(_)
            | Op::Compare(_)
            | Op::Select
            | Op::Cast { .. }
            | Op::Broadcast { .. } => self.fused_elementwise(id, out, &shape, dtype)?,
            Op::Permute { .. } if self.transposed[id.index()] => Vec::new(),
            // A permute of an inlined value computes it at the permuted index.
            Op::Permute { .. } if self.inlined[arg(0).index()] => self.fused_elementwise(id, out, &shape, dtype)?,
            Op::Permute { perm } => {
                let (a, from) = (buf(self, 0), self.shapes[arg(0).index()].clone());
                let from_strides = strides(&from);
                self.elementwise(out, &shape, |v| {
                    let index = perm
                        .iter()
                        .enumerate()
                        .fold(Affine::default(), |acc, (k, &p)| acc.plus_term(v[k], from_strides[p]));
                    load(a, index)
                })
            }
            Op::Slice { axis, start, step, .. } => {
                let (a, from) = (buf(self, 0), self.shapes[arg(0).index()].clone());
                let from_strides = strides(&from);
                let (axis, start, step) = (*axis, *start as i64, *step as i64);
                self.elementwise(out, &shape, |v| {
                    let index = (0..from.len()).fold(Affine::default(), |acc, k| {
                        if k == axis {
                            acc.plus_term(v[k], step * from_strides[k]).plus(start * from_strides[k])
                        } else {
                            acc.plus_term(v[k], from_strides[k])
                        }
                    });
                    load(a, index)
                })
            }
            Op::Pad { padding } => {
                let (a, from) = (buf(self, 0), self.shapes[arg(0).index()].clone());
                let zero = zero_of(node.ty.dtype);
                let mut body = self.elementwise(out, &shape, |_| zero);
                body.extend(self.copy_into(a, &from, out, &shape, &padding.iter().map(|p| p.0).collect::<Vec<_>>()));
                body
            }
            Op::Concat { axis } => {
                let mut body = Vec::new();
                let mut offset = 0u64;
                for k in 0..node.args.len() {
                    let (a, from) = (buf(self, k), self.shapes[arg(k).index()].clone());
                    let mut at = vec![0u64; shape.len()];
                    at[*axis] = offset;
                    body.extend(self.copy_into(a, &from, out, &shape, &at));
                    offset += from[*axis];
                }
                body
            }
            Op::Reduce { .. } => {
                let siblings = (0..self.merge.len())
                    .filter(|&s| self.merge[s] == Some(Merge::Sibling { with: id }))
                    .map(|s| NodeId(s as u32));
                let members: Vec<NodeId> = std::iter::once(id).chain(siblings).collect();
                self.reduce_many(&members, None)?
            }
            Op::MatMul => {
                let transposed = [self.transposed[arg(0).index()], self.transposed[arg(1).index()]];
                let (a, b) = (buf(self, 0), buf(self, 1));
                self.matmul(a, b, transposed, &self.shapes[arg(0).index()].clone(), &shape, out, node.ty.dtype)
            }
            Op::Conv(attrs) => {
                let (x, w) = (buf(self, 0), buf(self, 1));
                let (xs, ws) = (self.shapes[arg(0).index()].clone(), self.shapes[arg(1).index()].clone());
                self.conv(attrs, x, &xs, w, &ws, out, &shape, node.ty.dtype)
            }
            Op::ReduceWindow { kind, window, stride, padding } => {
                let (x, xs) = (buf(self, 0), self.shapes[arg(0).index()].clone());
                self.pool(*kind, window, stride, padding, x, &xs, out, &shape, node.ty.dtype)
            }
            Op::Gather { axis } => {
                let (x, xs) = (buf(self, 0), self.shapes[arg(0).index()].clone());
                let (idx, is) = (buf(self, 1), self.shapes[arg(1).index()].clone());
                let (x_strides, i_strides) = (strides(&xs), strides(&is));
                let axis = *axis;
                let ir = is.len();
                self.elementwise(out, &shape, |v| {
                    let mut base = Affine::default();
                    for k in 0..axis {
                        base = base.plus_term(v[k], x_strides[k]);
                    }
                    for k in axis + 1..xs.len() {
                        base = base.plus_term(v[k - 1 + ir], x_strides[k]);
                    }
                    let index = row_major(&v[axis..axis + ir], &i_strides);
                    KExpr::Gather {
                        buffer: x,
                        base,
                        index: Box::new(load(idx, index)),
                        stride: x_strides[axis],
                        bound: xs[axis],
                    }
                })
            }
            Op::ScatterAdd { axis } => {
                let (base, idx, upd) = (buf(self, 0), buf(self, 1), buf(self, 2));
                let (is, us) = (self.shapes[arg(1).index()].clone(), self.shapes[arg(2).index()].clone());
                let mut body = self.copy_into(base, &shape.clone(), out, &shape, &vec![0; shape.len()]);
                let vars = self.vars(us.len());
                let (o_strides, i_strides, u_strides) = (strides(&shape), strides(&is), strides(&us));
                let (axis, ir) = (*axis, is.len());
                let mut target = Affine::default();
                for k in 0..axis {
                    target = target.plus_term(vars[k], o_strides[k]);
                }
                for k in axis + 1..shape.len() {
                    target = target.plus_term(vars[k - 1 + ir], o_strides[k]);
                }
                let scatter = KStmt::ScatterAdd {
                    buffer: out,
                    base: target,
                    index: load(idx, row_major(&vars[axis..axis + ir], &i_strides)),
                    stride: o_strides[axis],
                    bound: shape[axis],
                    value: load(upd, row_major(&vars, &u_strides)),
                };
                // Repeated indices accumulate, so this nest must run in order.
                let mut nest = Self::nest(&vars, &us, vec![scatter]);
                if let Some(KStmt::For { parallel, .. }) = nest.first_mut() {
                    *parallel = false;
                }
                body.extend(nest);
                body
            }
        })
    }

    /// Copies `from` (shaped `from_shape`) into `to` (shaped `to_shape`) at
    /// offset `at` along each axis.
    fn copy_into(
        &mut self,
        from: BufferId,
        from_shape: &[u64],
        to: BufferId,
        to_shape: &[u64],
        at: &[u64],
    ) -> Vec<KStmt> {
        let vars = self.vars(from_shape.len());
        let to_strides = strides(to_shape);
        let target = (0..to_shape.len())
            .fold(Affine::default(), |a, k| a.plus_term(vars[k], to_strides[k]).plus(at[k] as i64 * to_strides[k]));
        let store =
            KStmt::Store { buffer: to, index: target, value: load(from, row_major(&vars, &strides(from_shape))) };
        let dtype = self.buffers[to.0 as usize].dtype;
        Self::ask_for_lanes(Self::nest(&vars, from_shape, vec![store]), dtype)
    }

    /// The reduction whose epilogue `id` is.
    fn epilogue_of(&self, id: NodeId) -> Option<NodeId> {
        let is_host = |m: &Option<Merge>| matches!(m, Some(Merge::Epilogue { into, .. }) if *into == id);
        self.merge.iter().position(is_host).map(|r| NodeId(r as u32))
    }

    /// The kernel of reductions over the same rows (one, or a host and
    /// its siblings): each accumulates in the same loops and stores its
    /// result, or, with `epilogue`, the elementwise node applied to the one
    /// reduction's accumulator is stored instead.
    fn reduce_many(&mut self, members: &[NodeId], epilogue: Option<NodeId>) -> Result<Vec<KStmt>, LowerError> {
        let first = self.f.graph.node(members[0]);
        let Op::Reduce { axes, keepdims, .. } = &first.op else {
            return Err(LowerError::Invalid(format!("{} is not a reduction", members[0])));
        };
        let (axes, keepdims) = (axes.clone(), *keepdims);
        let from = self.shapes[first.args[0].index()].clone();
        let kept: Vec<usize> = (0..from.len()).filter(|k| !axes.contains(k)).collect();
        let outer = self.vars(kept.len());
        let inner = self.vars(axes.len());
        let mut all = vec![VarId(0); from.len()];
        for (k, &axis) in kept.iter().enumerate() {
            all[axis] = outer[k];
        }
        for (k, &axis) in axes.iter().enumerate() {
            all[axis] = inner[k];
        }
        let at = At::Axes(all.iter().map(|&v| Affine::var(v)).collect());
        let kept_shape: Vec<u64> = kept.iter().map(|&k| from[k]).collect();
        let reduced_shape: Vec<u64> = axes.iter().map(|&k| from[k]).collect();
        let index = row_major(&outer, &strides(&kept_shape));
        let (mut body, mut updates, mut stores) = (Vec::new(), Vec::new(), Vec::new());
        for &m in members {
            let node = self.f.graph.node(m);
            let Op::Reduce { kind, .. } = node.op else {
                return Err(LowerError::Invalid(format!("{m} is not a reduction")));
            };
            let acc = self.acc();
            body.push(KStmt::AccInit { acc, dtype: node.ty.dtype, kind });
            updates.push(KStmt::AccUpdate { acc, value: self.value_of(node.args[0], &at)? });
            let (buffer, value) = match epilogue {
                Some(c) => {
                    // The epilogue's own indices: the kept axes, and 0 on kept dimensions of size 1.
                    let mut outer_vars = outer.iter();
                    let c_at: Vec<Affine> = (0..from.len())
                        .filter(|k| keepdims || !axes.contains(k))
                        .map(|k| {
                            if axes.contains(&k) {
                                Affine::constant(0)
                            } else {
                                outer_vars.next().map_or(Affine::constant(0), |&v| Affine::var(v))
                            }
                        })
                        .collect();
                    self.acc_of.insert(m, acc);
                    let value = self.expr_of(c, &At::Axes(c_at));
                    self.acc_of.remove(&m);
                    // Kept for later readers: stored as well.
                    if matches!(self.merge[m.index()], Some(Merge::Epilogue { keep: true, .. })) {
                        let buffer = self.node_buffer[m.index()];
                        stores.push(KStmt::Store { buffer, index: index.clone(), value: KExpr::Acc(acc) });
                    }
                    (self.node_buffer[c.index()], value?)
                }
                None => (self.node_buffer[m.index()], KExpr::Acc(acc)),
            };
            stores.push(KStmt::Store { buffer, index: index.clone(), value });
        }
        body.extend(Self::nest_serial(&inner, &reduced_shape, updates));
        body.extend(stores);
        Ok(Self::ask_for_column_lanes(Self::nest(&outer, &kept_shape, body)))
    }

    /// Loops without parallelism around one accumulator update; the
    /// innermost asks for four lanes when it is long enough (the backend
    /// widens it when its accesses are contiguous along it).
    fn nest_serial(vars: &[VarId], extents: &[u64], inner: Vec<KStmt>) -> Vec<KStmt> {
        let update = matches!(inner.as_slice(), [KStmt::AccUpdate { .. }]);
        let mut body = inner;
        for (k, (&var, &extent)) in vars.iter().zip(extents).enumerate().rev() {
            let vector = if update && k == vars.len() - 1 && extent >= 16 { 4 } else { 1 };
            body = vec![KStmt::For { var, extent, parallel: false, vector, body }];
        }
        body
    }

    /// `out = a @ b`; `transposed[k]` says operand `k`'s buffer holds it
    /// transposed (the source of an absorbed permute).
    #[allow(clippy::too_many_arguments)]
    fn matmul(
        &mut self,
        a: BufferId,
        b: BufferId,
        transposed: [bool; 2],
        a_shape: &[u64],
        out_shape: &[u64],
        out: BufferId,
        dtype: DType,
    ) -> Vec<KStmt> {
        let r = out_shape.len();
        let (m, n, k) = (out_shape[r - 2], out_shape[r - 1], a_shape[r - 1]);
        let batch: u64 = out_shape[..r - 2].iter().product();
        if dtype.is_float() {
            let matrix = |buffer, rows: u64, cols: u64, transposed: bool| {
                let m = MatrixRef::row_major(buffer, 0, cols, rows * cols);
                if transposed { MatrixRef { row_stride: 1, col_stride: rows, ..m } } else { m }
            };
            let (a, b, c) = (matrix(a, m, k, transposed[0]), matrix(b, k, n, transposed[1]), matrix(out, m, n, false));
            return self.gemm([batch, m, n, k], a, b, c, dtype);
        }
        let [j, i, col, l] = [self.vars(1)[0], self.vars(1)[0], self.vars(1)[0], self.vars(1)[0]];
        let acc = self.acc();
        let a_index = Affine::default().plus_term(j, (m * k) as i64).plus_term(i, k as i64).plus_term(l, 1);
        let b_index = Affine::default().plus_term(j, (k * n) as i64).plus_term(l, n as i64).plus_term(col, 1);
        let product = KExpr::Binary(kiln_ir::BinaryOp::Mul, Box::new(load(a, a_index)), Box::new(load(b, b_index)));
        let mut body = vec![KStmt::AccInit { acc, dtype, kind: ReduceKind::Sum }];
        body.extend(Self::nest_serial(&[l], &[k], vec![KStmt::AccUpdate { acc, value: product }]));
        let c_index = Affine::default().plus_term(j, (m * n) as i64).plus_term(i, n as i64).plus_term(col, 1);
        body.push(KStmt::Store { buffer: out, index: c_index, value: KExpr::Acc(acc) });
        Self::nest(&[j, i, col], &[batch, m, n], body)
    }

    /// A zero-initialized (or `fill`-initialized) copy of `x` with `padding`
    /// around each axis, in a new buffer; returns it, its shape and the
    /// statements that fill it.
    fn padded_copy(
        &mut self,
        x: BufferId,
        xs: &[u64],
        padding: &[(u64, u64)],
        fill: KExpr,
        dtype: DType,
    ) -> (BufferId, Vec<u64>, Vec<KStmt>) {
        if padding.iter().all(|&p| p == (0, 0)) {
            return (x, xs.to_vec(), Vec::new());
        }
        let shape: Vec<u64> = xs.iter().zip(padding).map(|(&d, &(lo, hi))| d + lo + hi).collect();
        let padded = self.new_buffer(BufferRole::Temp, dtype, numel(&shape));
        let mut body = self.elementwise(padded, &shape, |_| fill);
        body.extend(self.copy_into(x, xs, padded, &shape, &padding.iter().map(|p| p.0).collect::<Vec<_>>()));
        (padded, shape, body)
    }

    /// `c = a @ b` for `batch` float matrices (`sizes` = batch, m, n, k), as
    /// the options ask: a runtime call or loop nests.
    fn gemm(&mut self, sizes: [u64; 4], a: MatrixRef, b: MatrixRef, c: MatrixRef, dtype: DType) -> Vec<KStmt> {
        let [batch, m, n, k] = sizes;
        if self.options.gemm == GemmLowering::Call {
            return vec![KStmt::Call(RuntimeCall::Gemm { batch, m, n, k, a, b, c })];
        }
        let [j, i, l, col] = [self.vars(1)[0], self.vars(1)[0], self.vars(1)[0], self.vars(1)[0]];
        let at = |mat: &MatrixRef, row: VarId, column: VarId| {
            Affine::constant(mat.offset as i64)
                .plus_term(j, mat.batch_stride as i64)
                .plus_term(row, mat.row_stride as i64)
                .plus_term(column, mat.col_stride as i64)
        };
        let vector = if dtype == DType::F32 && n >= 4 { 4 } else { 1 };
        let row = |value: KExpr| KStmt::For {
            var: col,
            extent: n,
            parallel: false,
            vector,
            body: vec![KStmt::Store { buffer: c.buffer, index: at(&c, i, col), value }],
        };
        let zero = row(zero_of(dtype));
        let product = KExpr::Binary(
            kiln_ir::BinaryOp::Mul,
            Box::new(load(a.buffer, at(&a, i, l))),
            Box::new(load(b.buffer, at(&b, l, col))),
        );
        let update =
            row(KExpr::Binary(kiln_ir::BinaryOp::Add, Box::new(load(c.buffer, at(&c, i, col))), Box::new(product)));
        let depth = KStmt::For { var: l, extent: k, parallel: false, vector: 1, body: vec![update] };
        Self::nest(&[j, i], &[batch, m], vec![zero, depth])
    }

    /// A one-group float convolution of the padded input `xp` (shape `ps`)
    /// as im2col and a batched GEMM into `out`.
    #[allow(clippy::too_many_arguments)]
    fn im2col_conv(
        &mut self,
        attrs: &ConvAttrs,
        xp: BufferId,
        ps: &[u64],
        w: BufferId,
        ws: &[u64],
        out: BufferId,
        os: &[u64],
        dtype: DType,
    ) -> Vec<KStmt> {
        let spatial = ps.len() - 2;
        let (batch, c_out, c_in) = (os[0], ws[0], ws[1]);
        let window: u64 = ws[2..].iter().product();
        let positions: u64 = os[2..].iter().product();
        let rows = c_in * window;
        let col = self.new_buffer(BufferRole::Temp, dtype, batch * rows * positions);
        // col[n, ci, k..., y...] = xp[n, ci, y * stride + k * dilation]
        let n = self.vars(1)[0];
        let ci = self.vars(1)[0];
        let ks = self.vars(spatial);
        let ys = self.vars(spatial);
        let x_strides = strides(ps);
        let mut x_index = Affine::default().plus_term(n, x_strides[0]).plus_term(ci, x_strides[1]);
        for d in 0..spatial {
            let s = x_strides[d + 2];
            x_index =
                x_index.plus_term(ys[d], attrs.stride[d] as i64 * s).plus_term(ks[d], attrs.dilation[d] as i64 * s);
        }
        let mut vars = vec![n, ci];
        vars.extend(&ks);
        vars.extend(&ys);
        let mut extents = vec![batch, c_in];
        extents.extend(&ws[2..]);
        extents.extend(&os[2..]);
        let store = KStmt::Store { buffer: col, index: row_major(&vars, &strides(&extents)), value: load(xp, x_index) };
        let mut body = Self::ask_for_lanes(Self::nest(&vars, &extents, vec![store]), dtype);
        body.extend(self.gemm(
            [batch, c_out, positions, rows],
            MatrixRef::row_major(w, 0, rows, 0),
            MatrixRef::row_major(col, 0, positions, rows * positions),
            MatrixRef::row_major(out, 0, positions, c_out * positions),
            dtype,
        ));
        body
    }

    #[allow(clippy::too_many_arguments)]
    fn conv(
        &mut self,
        attrs: &ConvAttrs,
        x: BufferId,
        xs: &[u64],
        w: BufferId,
        ws: &[u64],
        out: BufferId,
        os: &[u64],
        dtype: DType,
    ) -> Vec<KStmt> {
        let spatial = xs.len() - 2;
        let mut padding = vec![(0, 0), (0, 0)];
        padding.extend(attrs.padding.iter().copied());
        let (xp, ps, mut body) = self.padded_copy(x, xs, &padding, zero_of(dtype), dtype);
        let groups = attrs.groups;
        if groups == 1 && dtype.is_float() && self.options.conv == ConvLowering::Im2col {
            body.extend(self.im2col_conv(attrs, xp, &ps, w, ws, out, os, dtype));
            return body;
        }
        let (c_out_group, c_in_group) = (ws[0] / groups, ws[1]);
        let n = self.vars(1)[0];
        let g = self.vars(1)[0];
        let co = self.vars(1)[0];
        let ys = self.vars(spatial);
        let ci = self.vars(1)[0];
        let ks = self.vars(spatial);
        let (x_strides, w_strides, o_strides) = (strides(&ps), strides(ws), strides(os));
        let mut x_index = Affine::default()
            .plus_term(n, x_strides[0])
            .plus_term(g, c_in_group as i64 * x_strides[1])
            .plus_term(ci, x_strides[1]);
        let mut w_index = Affine::default()
            .plus_term(g, c_out_group as i64 * w_strides[0])
            .plus_term(co, w_strides[0])
            .plus_term(ci, w_strides[1]);
        let mut o_index = Affine::default()
            .plus_term(n, o_strides[0])
            .plus_term(g, c_out_group as i64 * o_strides[1])
            .plus_term(co, o_strides[1]);
        for d in 0..spatial {
            let s = x_strides[d + 2];
            x_index =
                x_index.plus_term(ys[d], attrs.stride[d] as i64 * s).plus_term(ks[d], attrs.dilation[d] as i64 * s);
            w_index = w_index.plus_term(ks[d], w_strides[d + 2]);
            o_index = o_index.plus_term(ys[d], o_strides[d + 2]);
        }
        let acc = self.acc();
        let product = KExpr::Binary(kiln_ir::BinaryOp::Mul, Box::new(load(xp, x_index)), Box::new(load(w, w_index)));
        let mut reduce_vars = vec![ci];
        reduce_vars.extend(&ks);
        let mut reduce_extents = vec![c_in_group];
        reduce_extents.extend(&ws[2..]);
        let mut inner = vec![KStmt::AccInit { acc, dtype, kind: ReduceKind::Sum }];
        inner.extend(Self::nest_serial(&reduce_vars, &reduce_extents, vec![KStmt::AccUpdate { acc, value: product }]));
        inner.push(KStmt::Store { buffer: out, index: o_index, value: KExpr::Acc(acc) });
        let mut outer_vars = vec![n, g, co];
        outer_vars.extend(&ys);
        let mut outer_extents = vec![os[0], groups, c_out_group];
        outer_extents.extend(&os[2..]);
        body.extend(Self::nest(&outer_vars, &outer_extents, inner));
        body
    }

    #[allow(clippy::too_many_arguments)]
    fn pool(
        &mut self,
        kind: ReduceKind,
        window: &[u64],
        stride: &[u64],
        padding: &[(u64, u64)],
        x: BufferId,
        xs: &[u64],
        out: BufferId,
        os: &[u64],
        dtype: DType,
    ) -> Vec<KStmt> {
        let identity = match (kind, dtype) {
            (ReduceKind::Sum, d) => zero_of(d),
            (ReduceKind::Max, DType::I32) => KExpr::Const { value: Literal::Int(i64::from(i32::MIN)), dtype },
            (ReduceKind::Max, d) if d.is_int() => KExpr::Const { value: Literal::Int(i64::MIN), dtype },
            (ReduceKind::Max, d) => KExpr::Const { value: Literal::float(f64::NEG_INFINITY), dtype: d },
        };
        let (xp, ps, mut body) = self.padded_copy(x, xs, padding, identity, dtype);
        let outs = self.vars(os.len());
        let ks = self.vars(window.len());
        let x_strides = strides(&ps);
        let index = (0..os.len()).fold(Affine::default(), |a, d| {
            a.plus_term(outs[d], stride[d] as i64 * x_strides[d]).plus_term(ks[d], x_strides[d])
        });
        let acc = self.acc();
        let mut inner = vec![KStmt::AccInit { acc, dtype, kind }];
        inner.extend(Self::nest_serial(&ks, window, vec![KStmt::AccUpdate { acc, value: load(xp, index) }]));
        inner.push(KStmt::Store { buffer: out, index: row_major(&outs, &strides(os)), value: KExpr::Acc(acc) });
        body.extend(Self::ask_for_column_lanes(Self::nest(&outs, os, inner)));
        body
    }
}

/// Whether every load and store in `s` moves along `v` by at most one
/// element per iteration, stores by exactly one: what four lanes of `v`
/// read and write contiguously.
fn moves_by_one(s: &KStmt, v: VarId) -> bool {
    match s {
        KStmt::For { body, .. } => body.iter().all(|s| moves_by_one(s, v)),
        KStmt::Store { index, value, .. } => index.coefficient(v) == 1 && loads_move_by_one(value, v),
        KStmt::AccUpdate { value, .. } => loads_move_by_one(value, v),
        KStmt::AccInit { .. } => true,
        KStmt::ScatterAdd { .. } | KStmt::Call(_) => false,
    }
}

/// Whether every load of `e` moves along `v` by at most one element.
fn loads_move_by_one(e: &KExpr, v: VarId) -> bool {
    let ok = |e: &KExpr| loads_move_by_one(e, v);
    match e {
        KExpr::Load { index, .. } => matches!(index.coefficient(v), 0 | 1),
        KExpr::Gather { .. } | KExpr::RandomBits { .. } | KExpr::Index { .. } => false,
        KExpr::Unary(_, x) | KExpr::Cast(_, x) => ok(x),
        KExpr::Binary(_, a, b) | KExpr::Compare(_, a, b) => ok(a) && ok(b),
        KExpr::Select(c, a, b) => ok(c) && ok(a) && ok(b),
        KExpr::Const { .. } | KExpr::Acc(_) => true,
    }
}

/// `s` with loop variable `v` read as 0: its terms dropped from every index.
fn without_var(s: &mut KStmt, v: VarId) {
    let drop = |a: &mut Affine| a.terms.retain(|(var, _)| *var != v);
    match s {
        KStmt::For { body, .. } => body.iter_mut().for_each(|s| without_var(s, v)),
        KStmt::Store { index, value, .. } => {
            drop(index);
            expr_without_var(value, v);
        }
        KStmt::ScatterAdd { base, index, value, .. } => {
            drop(base);
            expr_without_var(index, v);
            expr_without_var(value, v);
        }
        KStmt::AccUpdate { value, .. } => expr_without_var(value, v),
        KStmt::AccInit { .. } | KStmt::Call(_) => {}
    }
}

fn expr_without_var(e: &mut KExpr, v: VarId) {
    let drop = |a: &mut Affine| a.terms.retain(|(var, _)| *var != v);
    match e {
        KExpr::Index { index, .. } | KExpr::Load { index, .. } => drop(index),
        KExpr::Gather { base, index, .. } => {
            drop(base);
            expr_without_var(index, v);
        }
        KExpr::RandomBits { key, counter, .. } => {
            drop(counter);
            expr_without_var(key, v);
        }
        KExpr::Unary(_, x) | KExpr::Cast(_, x) => expr_without_var(x, v),
        KExpr::Binary(_, a, b) | KExpr::Compare(_, a, b) => {
            expr_without_var(a, v);
            expr_without_var(b, v);
        }
        KExpr::Select(c, a, b) => {
            expr_without_var(c, v);
            expr_without_var(a, v);
            expr_without_var(b, v);
        }
        KExpr::Const { .. } | KExpr::Acc(_) => {}
    }
}

fn zero_of(dtype: DType) -> KExpr {
    let value = match dtype {
        DType::Bool => Literal::Bool(false),
        d if d.is_float() => Literal::float(0.0),
        _ => Literal::Int(0),
    };
    KExpr::Const { value, dtype }
}
