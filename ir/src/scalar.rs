//! The meaning of elementwise ops on single values, shared by the graph
//! interpreter and the kernel IR executor so that both compute exactly the
//! same thing. Floats are f64 (f32 results are rounded by the caller),
//! integers i64 with wrapping arithmetic, max and min propagate NaN.

use crate::op::{BinaryOp, CompareOp, UnaryOp};

/// A unary op on a float (`Not` is not defined on floats: NaN).
pub fn unary_float(op: UnaryOp, v: f64) -> f64 {
    match op {
        UnaryOp::Neg => -v,
        UnaryOp::Abs => v.abs(),
        UnaryOp::Sign => {
            if v > 0.0 {
                1.0
            } else if v < 0.0 {
                -1.0
            } else {
                v
            }
        }
        UnaryOp::Exp => v.exp(),
        UnaryOp::Log => v.ln(),
        UnaryOp::Sqrt => v.sqrt(),
        UnaryOp::Recip => 1.0 / v,
        UnaryOp::Sin => v.sin(),
        UnaryOp::Cos => v.cos(),
        UnaryOp::Tanh => v.tanh(),
        UnaryOp::Floor => v.floor(),
        UnaryOp::Not => f64::NAN,
    }
}

/// A unary op on an integer (only neg, abs and sign are defined on them).
pub fn unary_int(op: UnaryOp, v: i64) -> i64 {
    match op {
        UnaryOp::Neg => v.wrapping_neg(),
        UnaryOp::Abs => v.wrapping_abs(),
        _ => v.signum(),
    }
}

/// NaN if either operand is NaN, else `value`.
pub fn nan_or(p: f64, q: f64, value: f64) -> f64 {
    if p.is_nan() || q.is_nan() { f64::NAN } else { value }
}

/// A binary op on floats (`And`/`Or` are not defined on floats: NaN).
pub fn binary_float(op: BinaryOp, p: f64, q: f64) -> f64 {
    match op {
        BinaryOp::Add => p + q,
        BinaryOp::Sub => p - q,
        BinaryOp::Mul => p * q,
        BinaryOp::Div => p / q,
        BinaryOp::Max => nan_or(p, q, p.max(q)),
        BinaryOp::Min => nan_or(p, q, p.min(q)),
        BinaryOp::Pow => p.powf(q),
        BinaryOp::And | BinaryOp::Or => f64::NAN,
    }
}

/// A binary op on integers; `None` for a division by zero.
pub fn binary_int(op: BinaryOp, p: i64, q: i64) -> Option<i64> {
    Some(match op {
        BinaryOp::Add => p.wrapping_add(q),
        BinaryOp::Sub => p.wrapping_sub(q),
        BinaryOp::Mul => p.wrapping_mul(q),
        BinaryOp::Div if q == 0 => return None,
        BinaryOp::Div => p.wrapping_div(q),
        BinaryOp::Max => p.max(q),
        BinaryOp::Min => p.min(q),
        _ => 0,
    })
}

/// A binary op on bools (only `And` and `Or` are defined on them).
pub fn binary_bool(op: BinaryOp, p: bool, q: bool) -> bool {
    if op == BinaryOp::And { p && q } else { p || q }
}

/// A comparison of two values of one type.
pub fn compare<T: PartialOrd>(op: CompareOp, p: T, q: T) -> bool {
    match op {
        CompareOp::Eq => p == q,
        CompareOp::Ne => p != q,
        CompareOp::Lt => p < q,
        CompareOp::Le => p <= q,
        CompareOp::Gt => p > q,
        CompareOp::Ge => p >= q,
    }
}
