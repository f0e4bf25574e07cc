//! The closed set of graph IR operations.
//!
//! Every variant documents its typing rule; [`crate::typing::infer`] implements
//! them, and the verifier and the graph builder both use that one function.
//! Ops whose output shape cannot be derived from their operands carry it in
//! their payload, so an op together with its operand types determines the
//! output type exactly. Composite operations (softmax, layer norm, ...) are not
//! ops: the prelude writes them in kiln from these primitives.

use crate::types::{DType, F64Bits, Shape, Symbol};

/// A graph IR operation.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// The function's input number `index`; its type is the signature's.
    Input { index: u32 },
    /// A trained parameter declared in the module; its type is the declaration's.
    Param { name: String },
    /// `dtype[shape]` filled with `value` (a splat). No operands.
    Constant { value: Literal, dtype: DType, shape: Shape },
    /// The run-time value of a symbolic dimension: `i64[]`. No operands.
    DimValue { symbol: Symbol },
    /// `dtype[shape]` (numeric) whose element at index `i` is `i[axis]`. No operands.
    Iota { axis: usize, dtype: DType, shape: Shape },
    /// Counter-based random numbers. One operand, the key `i64[]`. Output
    /// `dtype[shape]` with `dtype` an integer: each element holds 31 (i32,
    /// [`crate::random::bits31`]) or 63 (i64, [`crate::random::bits`])
    /// uniformly random bits, a pure function of (key, stream, linear
    /// index), so results do not depend on evaluation order.
    RandomBits { stream: u64, dtype: DType, shape: Shape },
    /// Elementwise `T[s] -> T[s]`; see [`UnaryOp`] for which dtypes each takes.
    Unary(UnaryOp),
    /// Elementwise `T[s], T[s] -> T[s]`: both operands have the same type.
    Binary(BinaryOp),
    /// Elementwise `T[s], T[s] -> bool[s]`.
    Compare(CompareOp),
    /// `bool[s], T[s], T[s] -> T[s]`: where the condition holds, the second operand.
    Select,
    /// `T[s] -> to[s]`. Float to integer truncates toward zero; to bool is `!= 0`.
    Cast { to: DType },
    /// The identity, `T[s] -> T[s]`, through which no gradient flows.
    StopGradient,
    /// `T[s] -> T[s without axes]` (or with those axes set to 1 when `keepdims`).
    /// `axes` are sorted, unique and in range; the operand is numeric.
    Reduce { kind: ReduceKind, axes: Vec<usize>, keepdims: bool },
    /// `T[s] -> T[shape]` with the same number of elements, row-major order.
    Reshape { shape: Shape },
    /// NumPy broadcasting `T[s] -> T[shape]`: `s` is aligned to the trailing
    /// dimensions of `shape`, and each of its dimensions is 1 or equal.
    Broadcast { shape: Shape },
    /// `T[s] -> T[s[perm[0]], s[perm[1]], ...]`; `perm` is a permutation.
    Permute { perm: Vec<usize> },
    /// Elements `start, start+step, ... < stop` of one axis, which must have a
    /// constant size with `start <= stop <= size` and `step >= 1`.
    Slice { axis: usize, start: u64, stop: u64, step: u64 },
    /// Zero padding, `(before, after)` per axis; padded axes must be constant.
    Pad { padding: Vec<(u64, u64)> },
    /// Joins one or more operands of equal dtype and rank along `axis`, whose
    /// size must be constant in each; the other dimensions are equal.
    Concat { axis: usize },
    /// Batched matrix product `T[b.., m, k], T[b.., k, n] -> T[b.., m, n]`,
    /// rank >= 2, equal batch dimensions, numeric `T`.
    MatMul,
    /// Convolution (cross-correlation, as in the frameworks) over `d` spatial
    /// axes: input `T[n, c_in, x..]`, weight `T[c_out, c_in / groups, k..]`
    /// (with one group the channel counts may be symbolic; with more they
    /// must be constants that the groups divide), constant spatial sizes,
    /// output `T[n, c_out, y..]` with
    /// `y = (x + lo + hi - dilation * (k - 1) - 1) / stride + 1`.
    Conv(ConvAttrs),
    /// The transpose of [`Op::Conv`] with respect to its input (what
    /// frameworks call a transposed convolution, and the gradient of a
    /// convolution's input): `g: T[n, c_out, y..]` and the convolution's
    /// weight `w: T[c_out, c_in, k..]` (one group) give `T[n, c_in, size..]`,
    /// `out[n, ci, o * stride + k * dilation - lo] += g[n, co, o] * w[co, ci, k]`
    /// over every `co`, `o` and `k` whose position lies inside. `size` is
    /// the spatial shape of the convolution's input, which a convolution of
    /// it with `conv` turns into `y`.
    ConvTranspose { conv: ConvAttrs, size: Vec<u64> },
    /// A sliding-window reduction over every axis (pooling): window, stride and
    /// padding have one entry per axis; padding holds the reduction's identity
    /// (0 for sum, -inf for max).
    ReduceWindow { kind: ReduceKind, window: Vec<u64>, stride: Vec<u64>, padding: Vec<(u64, u64)> },
    /// NumPy `take`: `T[a.., x, b..], I[i..] -> T[a.., i.., b..]` where `x` is
    /// the `axis`-th dimension and `I` an integer dtype. An index outside
    /// `0..x` is an evaluation error.
    Gather { axis: usize },
    /// The adjoint of gather: `base T[a.., x, b..], indices I[i..], updates
    /// T[a.., i.., b..] -> T[a.., x, b..]`, adding each update into the base
    /// at its index (repeated indices accumulate).
    ScatterAdd { axis: usize },
}

/// A scalar constant. Floats are stored as `f64` bits whatever the node's
/// dtype; the value is rounded to the dtype when evaluated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Literal {
    Float(F64Bits),
    Int(i64),
    Bool(bool),
}

impl Literal {
    pub fn float(x: f64) -> Literal {
        Literal::Float(F64Bits::new(x))
    }

    /// Whether this literal can fill a tensor of `dtype`.
    pub fn fits(self, dtype: DType) -> bool {
        match self {
            Literal::Float(_) => dtype.is_float(),
            Literal::Int(_) => dtype.is_int(),
            Literal::Bool(_) => dtype == DType::Bool,
        }
    }
}

/// Elementwise operations of one operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UnaryOp {
    /// Numeric.
    Neg,
    /// Numeric.
    Abs,
    /// Numeric: -1, 0 or 1.
    Sign,
    /// Float.
    Exp,
    /// Float; the natural logarithm.
    Log,
    /// Float.
    Sqrt,
    /// Float; `1 / x`.
    Recip,
    /// Float.
    Sin,
    /// Float.
    Cos,
    /// Float.
    Tanh,
    /// Float; rounds toward negative infinity.
    Floor,
    /// Bool; logical not.
    Not,
}

impl UnaryOp {
    pub const ALL: [UnaryOp; 12] = [
        UnaryOp::Neg,
        UnaryOp::Abs,
        UnaryOp::Sign,
        UnaryOp::Exp,
        UnaryOp::Log,
        UnaryOp::Sqrt,
        UnaryOp::Recip,
        UnaryOp::Sin,
        UnaryOp::Cos,
        UnaryOp::Tanh,
        UnaryOp::Floor,
        UnaryOp::Not,
    ];

    /// Whether the op is defined on elements of `dtype`.
    pub fn accepts(self, dtype: DType) -> bool {
        match self {
            UnaryOp::Neg | UnaryOp::Abs | UnaryOp::Sign => dtype.is_numeric(),
            UnaryOp::Not => dtype == DType::Bool,
            _ => dtype.is_float(),
        }
    }
}

/// Elementwise operations of two operands of the same type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BinaryOp {
    /// Numeric.
    Add,
    /// Numeric.
    Sub,
    /// Numeric.
    Mul,
    /// Numeric; integer division truncates toward zero, and dividing an
    /// integer by zero is an evaluation error.
    Div,
    /// Numeric; the larger operand (NaN if either is NaN).
    Max,
    /// Numeric; the smaller operand (NaN if either is NaN).
    Min,
    /// Float; `x ** y`.
    Pow,
    /// Bool; logical and.
    And,
    /// Bool; logical or.
    Or,
}

impl BinaryOp {
    pub const ALL: [BinaryOp; 9] = [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Max,
        BinaryOp::Min,
        BinaryOp::Pow,
        BinaryOp::And,
        BinaryOp::Or,
    ];

    pub fn accepts(self, dtype: DType) -> bool {
        match self {
            BinaryOp::And | BinaryOp::Or => dtype == DType::Bool,
            BinaryOp::Pow => dtype.is_float(),
            _ => dtype.is_numeric(),
        }
    }
}

/// Elementwise comparisons. `Eq` and `Ne` take every dtype, the orderings
/// take numeric dtypes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CompareOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CompareOp {
    pub const ALL: [CompareOp; 6] =
        [CompareOp::Eq, CompareOp::Ne, CompareOp::Lt, CompareOp::Le, CompareOp::Gt, CompareOp::Ge];

    pub fn accepts(self, dtype: DType) -> bool {
        matches!(self, CompareOp::Eq | CompareOp::Ne) || dtype.is_numeric()
    }
}

/// How a reduction combines elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReduceKind {
    Sum,
    Max,
}

impl ReduceKind {
    pub const ALL: [ReduceKind; 2] = [ReduceKind::Sum, ReduceKind::Max];
}

/// Attributes of [`Op::Conv`], one entry per spatial axis.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConvAttrs {
    pub stride: Vec<u64>,
    pub padding: Vec<(u64, u64)>,
    pub dilation: Vec<u64>,
    pub groups: u64,
}

impl Op {
    /// How many operands the op takes; `None` for any number >= 1 (concat).
    pub fn arity(&self) -> Option<usize> {
        Some(match self {
            Op::Input { .. } | Op::Param { .. } | Op::Constant { .. } | Op::DimValue { .. } | Op::Iota { .. } => 0,
            Op::RandomBits { .. }
            | Op::Unary(_)
            | Op::Cast { .. }
            | Op::StopGradient
            | Op::Reduce { .. }
            | Op::Reshape { .. }
            | Op::Broadcast { .. }
            | Op::Permute { .. }
            | Op::Slice { .. }
            | Op::Pad { .. }
            | Op::ReduceWindow { .. } => 1,
            Op::Binary(_)
            | Op::Compare(_)
            | Op::MatMul
            | Op::Conv(_)
            | Op::ConvTranspose { .. }
            | Op::Gather { .. } => 2,
            Op::Select | Op::ScatterAdd { .. } => 3,
            Op::Concat { .. } => return None,
        })
    }
}
