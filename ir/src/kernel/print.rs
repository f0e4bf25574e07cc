//! The kernel IR text form, printing side; `parse.rs` reads it back.
//!
//! ```text
//! plan forward {
//!   b0: f32[8] input 0
//!   b1: f32[2] output 0
//!
//!   kernel sum_rows {
//!     for i0 in 0..2 parallel {
//!       a0: f32 = sum
//!       for i1 in 0..4 vector 4 {
//!         a0 += b0[4*i0 + i1]
//!       }
//!       b1[i0] = a0
//!     }
//!   }
//! }
//! ```
//!
//! Expressions are written as calls (`add(x, y)`, `cast(f32, x)`,
//! `const(f32, 0.5)`); a load is `b3[affine]`. A GEMM call names each
//! matrix as `b3[offset, row stride, batch stride]`, with a fourth number,
//! the column stride, when it is not 1 (a transposed operand):
//! `gemm(batch=1, m=2, n=2, k=3, a=b0[0, 1, 0, 2], b=b1[0, 2, 0], c=b2[0, 2, 0])`.
//! Indentation is two spaces a level, so printing is deterministic.

use std::fmt::{self, Write};

use super::{Affine, BufferRole, KExpr, KStmt, Kernel, MatrixRef, Plan, RuntimeCall};
use crate::op::Literal;
use crate::print::{binary_name, compare_name, reduce_name, unary_name};
use crate::types::write_float;

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "plan {} {{", self.name)?;
        for (i, b) in self.buffers.iter().enumerate() {
            write!(f, "  b{i}: {}[{}] ", b.dtype, b.len)?;
            match &b.role {
                BufferRole::Input(n) => writeln!(f, "input {n}")?,
                BufferRole::Output(n) => writeln!(f, "output {n}")?,
                BufferRole::Param(name) => writeln!(f, "param {name}")?,
                BufferRole::Temp => writeln!(f, "temp")?,
            }
        }
        for k in &self.kernels {
            writeln!(f)?;
            write_kernel(f, k)?;
        }
        f.write_str("}\n")
    }
}

fn write_kernel(f: &mut fmt::Formatter<'_>, k: &Kernel) -> fmt::Result {
    writeln!(f, "  kernel {} {{", k.name)?;
    for s in &k.body {
        write_stmt(f, s, 2)?;
    }
    f.write_str("  }\n")
}

fn write_stmt(f: &mut fmt::Formatter<'_>, s: &KStmt, depth: usize) -> fmt::Result {
    let pad = "  ".repeat(depth);
    match s {
        KStmt::For { var, extent, parallel, vector, body } => {
            write!(f, "{pad}for {var} in 0..{extent}")?;
            if *parallel {
                f.write_str(" parallel")?;
            }
            if *vector > 1 {
                write!(f, " vector {vector}")?;
            }
            f.write_str(" {\n")?;
            for s in body {
                write_stmt(f, s, depth + 1)?;
            }
            writeln!(f, "{pad}}}")
        }
        KStmt::Store { buffer, index, value } => {
            writeln!(f, "{pad}{buffer}[{}] = {}", AffineText(index), ExprText(value))
        }
        KStmt::ScatterAdd { buffer, base, index, stride, bound, value } => writeln!(
            f,
            "{pad}scatter_add({buffer}, [{}], {}, {stride}, {bound}, {})",
            AffineText(base),
            ExprText(index),
            ExprText(value)
        ),
        KStmt::AccInit { acc, dtype, kind } => writeln!(f, "{pad}{acc}: {dtype} = {}", reduce_name(*kind)),
        KStmt::AccUpdate { acc, value } => writeln!(f, "{pad}{acc} += {}", ExprText(value)),
        KStmt::Call(RuntimeCall::Gemm { batch, m, n, k, a, b, c }) => writeln!(
            f,
            "{pad}gemm(batch={batch}, m={m}, n={n}, k={k}, a={}, b={}, c={})",
            MatrixText(a),
            MatrixText(b),
            MatrixText(c)
        ),
    }
}

/// An affine expression: `256*i0 + i1 + 3`, `-i2 + 7`, `0`.
pub struct AffineText<'a>(pub &'a Affine);

impl fmt::Display for AffineText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = self.0;
        let mut first = true;
        for &(v, c) in &a.terms {
            let magnitude = c.unsigned_abs();
            match (first, c < 0) {
                (true, false) => {}
                (true, true) => f.write_char('-')?,
                (false, false) => f.write_str(" + ")?,
                (false, true) => f.write_str(" - ")?,
            }
            if magnitude != 1 {
                write!(f, "{magnitude}*")?;
            }
            write!(f, "{v}")?;
            first = false;
        }
        match (first, a.constant) {
            (true, c) => write!(f, "{c}"),
            (false, 0) => Ok(()),
            (false, c) if c < 0 => write!(f, " - {}", c.unsigned_abs()),
            (false, c) => write!(f, " + {c}"),
        }
    }
}

struct MatrixText<'a>(&'a MatrixRef);

impl fmt::Display for MatrixText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(f, "{}[{}, {}, {}", m.buffer, m.offset, m.row_stride, m.batch_stride)?;
        if m.col_stride != 1 {
            write!(f, ", {}", m.col_stride)?;
        }
        write!(f, "]")
    }
}

/// An expression in call form.
pub struct ExprText<'a>(pub &'a KExpr);

impl fmt::Display for ExprText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            KExpr::Const { value, dtype } => {
                write!(f, "const({dtype}, ")?;
                match value {
                    Literal::Float(x) => write_float(f, x.get())?,
                    Literal::Int(i) => write!(f, "{i}")?,
                    Literal::Bool(b) => write!(f, "{b}")?,
                }
                f.write_char(')')
            }
            KExpr::Index { index, dtype } => write!(f, "index({dtype}, [{}])", AffineText(index)),
            KExpr::Load { buffer, index } => write!(f, "{buffer}[{}]", AffineText(index)),
            KExpr::Gather { buffer, base, index, stride, bound } => {
                write!(f, "gather({buffer}, [{}], {}, {stride}, {bound})", AffineText(base), ExprText(index))
            }
            KExpr::Acc(a) => write!(f, "{a}"),
            KExpr::Unary(op, x) => write!(f, "{}({})", unary_name(*op), ExprText(x)),
            KExpr::Binary(op, a, b) => write!(f, "{}({}, {})", binary_name(*op), ExprText(a), ExprText(b)),
            KExpr::Compare(op, a, b) => write!(f, "{}({}, {})", compare_name(*op), ExprText(a), ExprText(b)),
            KExpr::Select(c, a, b) => write!(f, "select({}, {}, {})", ExprText(c), ExprText(a), ExprText(b)),
            KExpr::Cast(dtype, x) => write!(f, "cast({dtype}, {})", ExprText(x)),
            KExpr::RandomBits { key, stream, counter, dtype } => {
                write!(f, "random_bits({dtype}, {}, {stream}, [{}])", ExprText(key), AffineText(counter))
            }
        }
    }
}
