//! Lowering graph IR to kernel IR: one kernel per node that is computed
//! and materialized, as fusion placed it.
//!
//! Needs: a verified function, fusion's decisions for it ([`Fusion`]: which
//! nodes are inlined into their users, which reductions are computed in
//! another node's kernel), and a hint for every symbol of its types.
//!
//! Sizes stay symbolic: the plan declares each symbol (at least 1, with
//! its hint) and every extent, length, stride and GEMM dimension is a
//! [`Size`] of them, so the plan is correct at every binding. Choices that
//! depend on a size are taken at the hint and are correct at any size:
//! asking for four lanes (an extent of at least 4, or 16 for a reduction
//! loop, at the hint; the backend adds a scalar tail), and leaving out
//! loops of one iteration (only extents that are the constant 1).
//! Guarantees: a [`Plan`] whose input, parameter and output buffers follow
//! the function's inputs, the module's parameters and the function's
//! outputs, and the node each kernel comes from ([`KernelOrigin`]); running
//! the plan computes what the graph interpreter computes (the differential
//! tests hold it to that). Lowering is pure: it runs no other pass (the
//! pipeline, `crate::compile`, simplifies and fuses before it, merges GEMM
//! epilogues and verifies after it).
//!
//! Reshapes and `stop_gradient` alias their operand's buffer, as do permutes
//! only matrix products read (the products read them transposed) and
//! broadcasts of a weight matrix that products read as their right operand
//! (read once for every batch; the batches of the left operand are then the
//! rows of one product); inlined
//! values have no buffer: the elementwise kernels and reductions that use
//! them compute them where they would have loaded them; every other node
//! gets one kernel writing a fresh buffer. Outer loops are marked parallel;
//! the innermost loop of an f32 elementwise kernel or reduction asks for
//! four lanes. One file per kind of op: `elementwise`, `copy`, `reduce`
//! (reductions and pooling), `matmul`, `conv`; `loops` builds the nests.

mod conv;
mod conv_transpose;
mod copy;
mod elementwise;
mod loops;
mod matmul;
mod reduce;

use std::collections::BTreeMap;

use kiln_ir::kernel::{
    AccId, Affine, BufferDecl, BufferId, BufferRole, KExpr, KStmt, Kernel, Plan, Size, SizeSymbol, VarId,
};
use kiln_ir::{Bindings, DType, Dim, Function, Literal, NodeId, Op};

use crate::fuse::{Fusion, Merge, Placement};

/// Why a function could not be lowered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LowerError {
    #[error("no function named `{0}`")]
    UnknownFunction(String),
    #[error("symbol {0} has no value: give every symbolic dimension of the inputs a size hint")]
    Unbound(String),
    /// A value or buffer larger than a tensor may be at these sizes.
    #[error("{0}")]
    TooLarge(String),
    #[error("internal error: {0}")]
    Invalid(String),
}

/// How a float convolution with one group becomes kernels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ConvLowering {
    /// One loop nest: each output element sums its window.
    Direct,
    /// Copy each window into a column matrix (im2col), then one GEMM per
    /// batch element: weights `[c_out, c_in * window]` times columns
    /// `[c_in * window, output positions]`.
    Im2col,
    /// Copy each window into a row (im2row), then one GEMM for the whole
    /// batch: rows `[n * positions, c_in * window]` times the weights
    /// transposed, and the result's last two axes swapped: the weights are
    /// read once, and the GEMM is tall even where a layer has few positions.
    Im2row,
    /// The default: im2row where a convolution has fewer than 64 output
    /// positions or at least 64 output channels (at the sizes' hints),
    /// im2col otherwise (many positions and few channels: a GEMM only a
    /// few columns wide wastes the vector kernel, and im2col's per-example
    /// packing of the weights is then cheap). Chosen by
    /// `cargo bench --bench kiln -- conv` (docs/performance.md).
    #[default]
    Auto,
}

/// How a float matrix product becomes kernels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GemmLowering {
    /// A call into the runtime's GEMM (the JIT's choice).
    #[default]
    Call,
    /// Loop nests in the plan itself, `c[i, :] += a[i, l] * b[l, :]` with
    /// the row loop innermost: code with no runtime to call.
    Loops,
}

/// Choices lowering makes; the defaults are the measured best.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LowerOptions {
    pub conv: ConvLowering,
    pub gemm: GemmLowering,
}

/// What a kernel of a lowered plan computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelOrigin {
    /// The materialized node (with what fusion inlined or merged into it).
    Node(NodeId),
    /// A copy of output `n`, whose value lives in an input, a parameter or
    /// an earlier output.
    OutputCopy(u32),
}

/// A lowered plan and, for each of its kernels, where it came from.
#[derive(Clone, Debug)]
pub struct Lowered {
    pub plan: Plan,
    pub origins: Vec<KernelOrigin>,
}

/// Lowers `f`, placed by `fusion`, with `hints` (a value for every symbol
/// of its types, at which size-dependent choices are taken; the plan is
/// correct at every value).
pub fn lower(f: &Function, fusion: &Fusion, hints: &Bindings, options: LowerOptions) -> Result<Lowered, LowerError> {
    let mut shapes = Vec::with_capacity(f.graph.len());
    let mut symbols: Vec<SizeSymbol> = Vec::new();
    for (_, node) in f.graph.nodes() {
        node.ty.shape.resolve(hints).map_err(|s| LowerError::Unbound(s.to_string()))?;
        node.ty.checked_len(hints).map_err(LowerError::TooLarge)?;
        let shape = node.ty.shape.0.iter().map(|d| match d {
            Dim::Const(n) => Size::from(*n),
            Dim::Sym(s) => Size::symbol(s.clone()),
        });
        shapes.push(shape.collect::<Vec<Size>>());
        let dim_value = match &node.op {
            Op::DimValue { symbol } => Some(symbol),
            _ => None,
        };
        let named = node.ty.shape.0.iter().filter_map(|d| if let Dim::Sym(s) = d { Some(s) } else { None });
        for s in named.chain(dim_value) {
            if !symbols.iter().any(|d| &d.symbol == s) {
                hints.get(s).ok_or_else(|| LowerError::Unbound(s.to_string()))?;
                let hint = hints.get(s).copied().unwrap_or(1).max(1);
                symbols.push(SizeSymbol { symbol: s.clone(), min: 1, hint });
            }
        }
    }
    symbols.sort_by(|a, b| a.symbol.cmp(&b.symbol));
    if fusion.placement.len() != f.graph.len() || fusion.merges.len() != f.graph.len() {
        return Err(LowerError::Invalid(format!("fusion placed another function than `{}`", f.name)));
    }
    let inlined: Vec<bool> = fusion.placement.iter().map(|p| *p == Placement::Inlined).collect();
    let mut l = Lowering {
        f,
        hints,
        shapes,
        buffers: Vec::new(),
        node_buffer: Vec::new(),
        kernels: Vec::new(),
        origins: Vec::new(),
        next_var: 0,
        next_acc: 0,
        options,
        // A product reads a permute's operand in place only if it is in memory.
        transposed: matmul::transposed_views(f)
            .into_iter()
            .zip(f.graph.nodes())
            .map(|(t, (_, node))| t && node.args.iter().all(|a| !inlined[a.index()]))
            .collect(),
        // A product reads a broadcast weight in place only if it is in memory.
        shared: matmul::broadcast_views(f)
            .into_iter()
            .zip(f.graph.nodes())
            .map(|(v, (id, node))| v && !inlined[id.index()] && !inlined[node.args[0].index()])
            .collect(),
        inlined,
        merge: fusion.merges.clone(),
        acc_of: BTreeMap::new(),
    };
    l.assign_buffers();
    for (id, node) in f.graph.nodes() {
        l.next_var = 0;
        l.next_acc = 0;
        let body = l.node(id, &node.op)?;
        if !body.is_empty() {
            l.kernels.push(Kernel { name: format!("k{}_{}", id.0, kiln_ir::mnemonic(&node.op)), body });
            l.origins.push(KernelOrigin::Node(id));
        }
    }
    l.bind_outputs();
    for b in &l.buffers {
        let bytes = b.len.eval(hints).map(|n| i128::from(n) * b.dtype.size_bytes() as i128);
        if bytes.is_none_or(|bytes| bytes as u128 > kiln_ir::MAX_TENSOR_BYTES) {
            return Err(LowerError::TooLarge(format!(
                "a {} buffer of {} elements for `{}` is more than a tensor may hold ({} bytes) at the size hints",
                b.dtype,
                b.len,
                f.name,
                kiln_ir::MAX_TENSOR_BYTES
            )));
        }
    }
    let plan = Plan { name: f.name.clone(), symbols, buffers: l.buffers, kernels: l.kernels };
    Ok(Lowered { plan, origins: l.origins })
}

struct Lowering<'a> {
    f: &'a Function,
    /// The sizes size-dependent choices are taken at.
    hints: &'a Bindings,
    shapes: Vec<Vec<Size>>,
    buffers: Vec<BufferDecl>,
    node_buffer: Vec<BufferId>,
    kernels: Vec<Kernel>,
    origins: Vec<KernelOrigin>,
    next_var: u32,
    next_acc: u32,
    options: LowerOptions,
    /// Permutes that swap the last two axes of a float matrix and are read
    /// only by matrix products: no kernel, the products read their operand
    /// transposed through strides.
    transposed: Vec<bool>,
    /// For each node, whether it is a broadcast of a matrix that the
    /// products reading it read once for every batch (`matmul::broadcast_views`).
    shared: Vec<bool>,
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

fn strides(shape: &[Size]) -> Vec<Size> {
    let mut s = vec![Size::constant(1); shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1].clone() * shape[i + 1].clone();
    }
    s
}

fn numel(shape: &[Size]) -> Size {
    shape.iter().cloned().product()
}

/// `sum(vars[k] * strides[k])`.
fn row_major(vars: &[VarId], strides: &[Size]) -> Affine {
    vars.iter().zip(strides).fold(Affine::default(), |a, (&v, s)| a.plus_term(v, s.clone()))
}

fn load(buffer: BufferId, index: Affine) -> KExpr {
    KExpr::Load { buffer, index }
}

fn zero_of(dtype: DType) -> KExpr {
    let value = match dtype {
        DType::Bool => Literal::Bool(false),
        d if d.is_float() => Literal::float(0.0),
        _ => Literal::Int(0),
    };
    KExpr::Const { value, dtype }
}

impl Lowering<'_> {
    /// The value of `size` at the hints, for a choice that depends on it
    /// (0 if it has none, which no choice takes as large).
    fn at_hint(&self, size: &Size) -> u64 {
        size.eval(self.hints).and_then(|n| u64::try_from(n).ok()).unwrap_or(0)
    }

    fn new_buffer(&mut self, role: BufferRole, dtype: DType, len: Size) -> BufferId {
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
                Op::Broadcast { .. } if self.shared[id.index()] => self.node_buffer[node.args[0].index()],
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
            let out = self.new_buffer(BufferRole::Output(position as u32), decl.dtype, decl.len.clone());
            let v = VarId(0);
            let store = KStmt::Store { buffer: out, index: Affine::var(v), value: load(b, Affine::var(v)) };
            let body = vec![KStmt::For { var: v, extent: decl.len, parallel: true, vector: 1, body: vec![store] }];
            let body = self.ask_for_lanes(body, decl.dtype);
            self.kernels.push(Kernel { name: format!("copy_output_{position}"), body });
            self.origins.push(KernelOrigin::OutputCopy(position as u32));
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

    /// The statements of `id`'s kernel: none for a node computed elsewhere
    /// (inlined, merged, an alias of its operand) or given.
    fn node(&mut self, id: NodeId, op: &Op) -> Result<Vec<KStmt>, LowerError> {
        let node = self.f.graph.node(id);
        let out = self.node_buffer[id.index()];
        let shape = self.shapes[id.index()].clone();
        let arg = |k: usize| node.args[k];
        let dtype = node.ty.dtype;
        Ok(match op {
            _ if self.inlined[id.index()] || self.merge[id.index()].is_some() => Vec::new(),
            _ if let Some(r) = self.epilogue_of(id) => self.reduce_many(&[r], Some(id))?,
            Op::Reshape { .. } if self.inlined[arg(0).index()] => self.fused_elementwise(id, out, &shape, dtype)?,
            Op::Input { .. } | Op::Param { .. } | Op::Reshape { .. } | Op::StopGradient => Vec::new(),
            Op::Broadcast { .. } if self.shared[id.index()] => Vec::new(),
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
            Op::Permute { perm } => self.permute(id, perm),
            Op::Slice { axis, start, step, .. } => self.slice(id, *axis, *start, *step),
            Op::Pad { padding } => self.pad(id, padding, dtype),
            Op::Concat { axis } => self.concat(id, *axis),
            Op::Gather { axis } => self.gather(id, *axis),
            Op::ScatterAdd { axis } => self.scatter_add(id, *axis),
            Op::Reduce { .. } => {
                let siblings = (0..self.merge.len())
                    .filter(|&s| self.merge[s] == Some(Merge::Sibling { with: id }))
                    .map(|s| NodeId(s as u32));
                let members: Vec<NodeId> = std::iter::once(id).chain(siblings).collect();
                self.reduce_many(&members, None)?
            }
            Op::MatMul => {
                let transposed = [self.transposed[arg(0).index()], self.transposed[arg(1).index()]];
                // The weight is shared directly, or through a transpose.
                let through = self.f.graph.node(arg(1)).args.first().copied();
                let shared_b = self.shared[arg(1).index()]
                    || (self.transposed[arg(1).index()] && through.is_some_and(|t| self.shared[t.index()]));
                let (a, b) = (self.node_buffer[arg(0).index()], self.node_buffer[arg(1).index()]);
                self.matmul(a, b, transposed, shared_b, &self.shapes[arg(0).index()].clone(), &shape, out, dtype)
            }
            Op::Conv(attrs) => self.conv(id, attrs),
            Op::ConvTranspose { conv, .. } => self.conv_transpose(id, conv),
            Op::ReduceWindow { kind, window, stride, padding } => {
                let (x, xs) = (self.node_buffer[arg(0).index()], self.shapes[arg(0).index()].clone());
                self.pool(*kind, window, stride, padding, x, &xs, out, &shape, dtype)
            }
        })
    }
}
