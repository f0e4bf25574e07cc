//! Kernel IR: what a backend consumes. A [`Plan`] is an ordered list of
//! [`Kernel`] launches over buffers of known dtype and length; a kernel is a
//! loop nest whose loads and stores use affine index expressions of the loop
//! variables, with scalar arithmetic, reductions into accumulators, gathers
//! and scatters through computed indices, and calls into the runtime (GEMM).
//!
//! Sizes stay symbolic here: loop extents, buffer lengths, strides, GEMM
//! dimensions and index coefficients are [`Size`]s, polynomials in the
//! function's size symbols (`784*N`), which the plan declares with a lower
//! bound and the hint its size-dependent choices were taken at
//! ([`SizeSymbol`]). One plan runs at every binding; [`Plan::specialize`]
//! substitutes one where a consumer wants constants. Vectorization is a
//! property of a loop (`vector 4`): expressions stay scalar and the backend
//! widens the loop.
//!
//! The text form (see `print.rs`) round-trips through `parse.rs`, and
//! `verify.rs` checks types and proves every affine access in bounds.

mod epilogue;
mod memory;
mod parse;
mod print;
mod run;
mod size;
mod verify;
mod visit;

pub use epilogue::{GemmEpilogue, gemm_epilogue};
pub use memory::{ALIGN, ArenaLayout, arena_layout, live_spans};
pub use parse::parse_plan;
pub use run::{Storage, execute, execute_with, run_plan};
pub use size::{Monomial, Size, SizeSymbol, hints, lower_bounds};
pub use verify::{KernelVerifyError, verify_plan};

use std::fmt;

use crate::op::{BinaryOp, CompareOp, Literal, ReduceKind, UnaryOp};
use crate::types::DType;

/// A loop variable, written `i3`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VarId(pub u32);

/// A buffer of a plan, written `b3`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BufferId(pub u32);

/// An accumulator of a kernel, written `a3`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccId(pub u32);

impl fmt::Display for VarId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "i{}", self.0)
    }
}

impl fmt::Display for BufferId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "b{}", self.0)
    }
}

impl fmt::Display for AccId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a{}", self.0)
    }
}

/// Where a buffer's contents come from or go to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum BufferRole {
    /// The function's input number `n`.
    Input(u32),
    /// The function's output number `n`.
    Output(u32),
    /// A parameter of the module, by name.
    Param(String),
    /// An intermediate, owned by the plan.
    Temp,
}

/// A buffer: a flat array of `len` elements of `dtype`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BufferDecl {
    pub role: BufferRole,
    pub dtype: DType,
    pub len: Size,
}

/// `constant + sum(coefficient * variable)`, terms sorted by variable with
/// non-zero coefficients, so that equal expressions are equal values.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Affine {
    pub constant: Size,
    pub terms: Vec<(VarId, Size)>,
}

impl Affine {
    pub fn constant(c: impl Into<Size>) -> Affine {
        Affine { constant: c.into(), terms: Vec::new() }
    }

    pub fn var(v: VarId) -> Affine {
        Affine { constant: Size::constant(0), terms: vec![(v, Size::constant(1))] }
    }

    /// `self + coefficient * v`, kept canonical.
    pub fn plus_term(mut self, v: VarId, coefficient: impl Into<Size>) -> Affine {
        let coefficient = coefficient.into();
        match self.terms.binary_search_by_key(&v, |t| t.0) {
            Ok(i) => {
                let sum = std::mem::take(&mut self.terms[i].1) + coefficient;
                if sum.is(0) {
                    self.terms.remove(i);
                } else {
                    self.terms[i].1 = sum;
                }
            }
            Err(i) if !coefficient.is(0) => self.terms.insert(i, (v, coefficient)),
            Err(_) => {}
        }
        self
    }

    pub fn plus(mut self, c: impl Into<Size>) -> Affine {
        self.constant = std::mem::take(&mut self.constant) + c.into();
        self
    }

    /// `self * k`: every coefficient and the constant scaled.
    pub fn times(&self, k: &Size) -> Affine {
        let terms = self.terms.iter().map(|(v, c)| (*v, c.clone() * k.clone())).filter(|t| !t.1.is(0)).collect();
        Affine { constant: self.constant.clone() * k.clone(), terms }
    }

    /// `self + other`, kept canonical.
    pub fn add(&self, other: &Affine) -> Affine {
        other.terms.iter().fold(self.clone().plus(other.constant.clone()), |a, (v, c)| a.plus_term(*v, c.clone()))
    }

    /// Whether the coefficient of `v` is the constant `c`.
    pub fn coefficient_is(&self, v: VarId, c: i64) -> bool {
        self.terms.iter().find(|t| t.0 == v).map_or(c == 0, |t| t.1.is(c))
    }
}

/// A scalar expression.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KExpr {
    Const {
        value: Literal,
        dtype: DType,
    },
    /// The value of an affine expression of loop variables, as `dtype`
    /// (an integer or float type); iota lowers to this.
    Index {
        index: Affine,
        dtype: DType,
    },
    Load {
        buffer: BufferId,
        index: Affine,
    },
    /// `buffer[base + stride * index]` where `index` is computed; it must lie
    /// in `0..bound`, which the backend checks at run time.
    Gather {
        buffer: BufferId,
        base: Affine,
        index: Box<KExpr>,
        stride: Size,
        bound: Size,
    },
    Acc(AccId),
    Unary(UnaryOp, Box<KExpr>),
    Binary(BinaryOp, Box<KExpr>, Box<KExpr>),
    Compare(CompareOp, Box<KExpr>, Box<KExpr>),
    Select(Box<KExpr>, Box<KExpr>, Box<KExpr>),
    Cast(DType, Box<KExpr>),
    /// Random bits (as the graph op `random_bits`) for the element whose
    /// row-major position is `counter`.
    RandomBits {
        key: Box<KExpr>,
        stream: u64,
        counter: Affine,
        dtype: DType,
    },
}

/// A statement of a kernel body.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KStmt {
    /// `for var in 0..extent`; `parallel` loops may run their iterations on
    /// several threads, `vector` > 1 asks for that many lanes. Both
    /// promise that the iterations are independent: no iteration reads
    /// what another writes.
    For {
        var: VarId,
        extent: Size,
        parallel: bool,
        vector: u32,
        body: Vec<KStmt>,
    },
    Store {
        buffer: BufferId,
        index: Affine,
        value: KExpr,
    },
    /// `buffer[base + stride * index] += value`, `index` checked in `0..bound`.
    ScatterAdd {
        buffer: BufferId,
        base: Affine,
        index: KExpr,
        stride: Size,
        bound: Size,
        value: KExpr,
    },
    /// Declares an accumulator holding the identity of `kind` (0 or -inf/min).
    AccInit {
        acc: AccId,
        dtype: DType,
        kind: ReduceKind,
    },
    /// Combines `value` into the accumulator.
    AccUpdate {
        acc: AccId,
        value: KExpr,
    },
    Call(RuntimeCall),
}

/// A call into the runtime.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RuntimeCall {
    /// `batch` row-major matrix products `c = a @ b` (`m x k` times `k x n`),
    /// matrix `j` starting at `offset + j * batch_stride` in each buffer.
    Gemm { batch: Size, m: Size, n: Size, k: Size, a: MatrixRef, b: MatrixRef, c: MatrixRef },
}

/// A matrix inside a buffer: its first element, the distance between rows,
/// between consecutive matrices of a batch, and between the elements of a
/// row (1 for a row-major matrix; a transposed view of a row-major matrix
/// has a column stride and a row stride of 1). The result `c` of a GEMM
/// always has a column stride of 1.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MatrixRef {
    pub buffer: BufferId,
    pub offset: Size,
    pub row_stride: Size,
    pub batch_stride: Size,
    pub col_stride: Size,
}

impl MatrixRef {
    /// A row-major matrix (column stride 1).
    pub fn row_major(
        buffer: BufferId,
        offset: impl Into<Size>,
        row_stride: impl Into<Size>,
        batch_stride: impl Into<Size>,
    ) -> MatrixRef {
        MatrixRef {
            buffer,
            offset: offset.into(),
            row_stride: row_stride.into(),
            batch_stride: batch_stride.into(),
            col_stride: Size::constant(1),
        }
    }
}

/// One kernel: a name and a body.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Kernel {
    pub name: String,
    pub body: Vec<KStmt>,
}

/// A compiled function: buffers and the kernels to launch, in order.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Plan {
    pub name: String,
    /// The size symbols the plan's sizes may mention.
    pub symbols: Vec<SizeSymbol>,
    pub buffers: Vec<BufferDecl>,
    pub kernels: Vec<Kernel>,
}

impl Plan {
    /// The plan at `bindings`: every bound symbol replaced by its value in
    /// every size, and dropped from the declared symbols.
    pub fn specialize(&self, bindings: &crate::Bindings) -> Plan {
        let mut plan = self.clone();
        plan.symbols.retain(|s| !bindings.contains_key(&s.symbol));
        for b in &mut plan.buffers {
            b.len = b.len.substitute(bindings);
        }
        for k in &mut plan.kernels {
            for s in &mut k.body {
                s.for_each_size_mut(&mut |size| *size = size.substitute(bindings));
            }
        }
        plan
    }

    /// Checks that `bindings` gives every declared symbol a value at or
    /// above its lower bound, and names none the plan does not declare.
    pub fn check_bindings(&self, bindings: &crate::Bindings) -> Result<(), String> {
        for s in &self.symbols {
            match bindings.get(&s.symbol) {
                None => return Err(format!("size {} has no value", s.symbol)),
                Some(&v) if v < s.min => {
                    return Err(format!("size {} = {v} is below its least value {}", s.symbol, s.min));
                }
                Some(_) => {}
            }
        }
        if let Some(extra) = bindings.keys().find(|k| !self.symbols.iter().any(|s| &s.symbol == *k)) {
            return Err(format!("the plan has no size named {extra}"));
        }
        Ok(())
    }

    /// The length of buffer `b` in elements at `bindings`.
    pub fn buffer_len(&self, b: BufferId, bindings: &crate::Bindings) -> Option<u64> {
        self.buffer(b).and_then(|d| d.len.eval(bindings)).and_then(|n| u64::try_from(n).ok())
    }

    pub fn buffer(&self, id: BufferId) -> Option<&BufferDecl> {
        self.buffers.get(id.0 as usize)
    }

    /// For each buffer, the first and last kernel that use it (`None` for a
    /// buffer no kernel touches): what buffer reuse by liveness needs.
    pub fn lifetimes(&self) -> Vec<Option<(usize, usize)>> {
        let mut spans: Vec<Option<(usize, usize)>> = vec![None; self.buffers.len()];
        for (k, kernel) in self.kernels.iter().enumerate() {
            let mut used = Vec::new();
            for s in &kernel.body {
                buffers_of_stmt(s, &mut used);
            }
            for b in used {
                if let Some(slot) = spans.get_mut(b.0 as usize) {
                    *slot = Some(slot.map_or((k, k), |(first, _)| (first, k)));
                }
            }
        }
        spans
    }
}

/// The buffers `stmts` read or write, ascending, each once.
pub fn buffers_of(stmts: &[KStmt]) -> Vec<BufferId> {
    let mut out = Vec::new();
    stmts.iter().for_each(|s| buffers_of_stmt(s, &mut out));
    out.sort();
    out.dedup();
    out
}

fn buffers_of_stmt(s: &KStmt, out: &mut Vec<BufferId>) {
    s.walk(&mut |s| match s {
        KStmt::Store { buffer, .. } | KStmt::ScatterAdd { buffer, .. } => out.push(*buffer),
        KStmt::Call(RuntimeCall::Gemm { a, b, c, .. }) => out.extend([a.buffer, b.buffer, c.buffer]),
        KStmt::For { .. } | KStmt::AccInit { .. } | KStmt::AccUpdate { .. } => {}
    });
    s.walk_exprs(&mut |e| {
        if let KExpr::Load { buffer, .. } | KExpr::Gather { buffer, .. } = e {
            out.push(*buffer);
        }
    });
}
