//! The kernel IR text form, printing side; `parse.rs` reads it back.
//!
//! ```text
//! plan forward {
//!   size N >= 1 hint 2
//!   b0: f32[4*N] input 0
//!   b1: f32[N] output 0
//!
//!   kernel sum_rows {
//!     for i0 in 0..N parallel {
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
//! Sizes are polynomials in the declared size symbols (`784*N + 3`); an
//! index coefficient that is not one term is parenthesized:
//! `(N + 1)*i0`.
//!
//! Expressions are written as calls (`add(x, y)`, `cast(f32, x)`,
//! `const(f32, 0.5)`); a load is `b3[affine]`. A GEMM call names each
//! matrix as `b3[offset, row stride, batch stride]`, with a fourth number,
//! the column stride, when it is not 1 (a transposed operand):
//! `gemm(batch=1, m=2, n=2, k=3, a=b0[0, 1, 0, 2], b=b1[0, 2, 0], c=b2[0, 2, 0])`.
//! Indentation is two spaces a level, so printing is deterministic.

use std::fmt::{self, Write};

use super::{Affine, BufferRole, KExpr, KStmt, Kernel, MatrixRef, Plan, RuntimeCall, Size};
use crate::op::Literal;
use crate::print::{binary_name, compare_name, reduce_name, unary_name};
use crate::types::write_float;

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "plan {} {{", self.name)?;
        for s in &self.symbols {
            writeln!(f, "  size {} >= {} hint {}", s.symbol, s.min, s.hint)?;
        }
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

impl fmt::Display for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_kernel(f, self)
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

/// An affine expression: `256*i0 + i1 + 3`, `-i2 + 7`, `784*N*i0 + N`,
/// `(N + 1)*i1`, `0`.
pub struct AffineText<'a>(pub &'a Affine);

/// The signed pieces of a size as a sum: each term's sign and its text,
/// with `suffix` (`*i0`) after each, the constant last.
fn size_pieces(s: &Size, suffix: &str, out: &mut Vec<(bool, String)>) {
    let mut ordered: Vec<_> = s.terms().iter().collect();
    ordered.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
    for (m, c) in ordered {
        let factors: Vec<String> = m.iter().map(|s| s.to_string()).collect();
        let magnitude = if c.unsigned_abs() == 1 { String::new() } else { format!("{}*", c.unsigned_abs()) };
        out.push((*c < 0, format!("{magnitude}{}{suffix}", factors.join("*"))));
    }
    let c = s.constant_term();
    if c != 0 {
        let text = match (suffix.strip_prefix('*'), c.unsigned_abs()) {
            (Some(var), 1) => var.to_string(),
            (_, magnitude) => format!("{magnitude}{suffix}"),
        };
        out.push((c < 0, text));
    }
}

fn write_pieces(f: &mut fmt::Formatter<'_>, pieces: &[(bool, String)]) -> fmt::Result {
    if pieces.is_empty() {
        return f.write_char('0');
    }
    for (k, (negative, text)) in pieces.iter().enumerate() {
        match (k == 0, negative) {
            (true, false) => {}
            (true, true) => f.write_char('-')?,
            (false, false) => f.write_str(" + ")?,
            (false, true) => f.write_str(" - ")?,
        }
        f.write_str(text)?;
    }
    Ok(())
}

impl fmt::Display for AffineText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = self.0;
        let mut pieces = Vec::new();
        for (v, c) in &a.terms {
            let one_term = c.terms().len() + usize::from(c.constant_term() != 0) == 1;
            if one_term {
                size_pieces(c, &format!("*{v}"), &mut pieces);
            } else {
                pieces.push((false, format!("({c})*{v}")));
            }
        }
        size_pieces(&a.constant, "", &mut pieces);
        write_pieces(f, &pieces)
    }
}

struct MatrixText<'a>(&'a MatrixRef);

impl fmt::Display for MatrixText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(f, "{}[{}, {}, {}", m.buffer, m.offset, m.row_stride, m.batch_stride)?;
        if !m.col_stride.is(1) {
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
