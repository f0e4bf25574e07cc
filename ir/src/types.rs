//! Tensor types: element dtypes and shapes whose dimensions are constants or
//! named symbols.
//!
//! A symbol (`N`, `T`) stands for a dimension that is bound when a function is
//! specialized to concrete input shapes. Two dimensions are equal only when they
//! are the same constant or the same symbol: the IR never guesses that `N == M`.

use std::collections::BTreeMap;
use std::fmt;

/// The element type of a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    F32,
    F64,
    I32,
    I64,
    Bool,
}

impl DType {
    pub const ALL: [DType; 5] = [DType::F32, DType::F64, DType::I32, DType::I64, DType::Bool];

    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64)
    }

    pub fn is_int(self) -> bool {
        matches!(self, DType::I32 | DType::I64)
    }

    /// Numbers: floats and integers, not bool.
    pub fn is_numeric(self) -> bool {
        self != DType::Bool
    }

    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::I32 => "i32",
            DType::I64 => "i64",
            DType::Bool => "bool",
        }
    }

    pub fn from_name(name: &str) -> Option<DType> {
        DType::ALL.into_iter().find(|d| d.name() == name)
    }

    /// Size of one element in bytes.
    pub fn size_bytes(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F64 | DType::I64 => 8,
            DType::Bool => 1,
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The name of a symbolic dimension, such as `N`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Symbol(pub String);

impl Symbol {
    pub fn new(name: impl Into<String>) -> Symbol {
        Symbol(name.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One dimension of a shape.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dim {
    Const(u64),
    Sym(Symbol),
}

impl Dim {
    pub fn sym(name: &str) -> Dim {
        Dim::Sym(Symbol::new(name))
    }

    pub fn as_const(&self) -> Option<u64> {
        match self {
            Dim::Const(n) => Some(*n),
            Dim::Sym(_) => None,
        }
    }

    /// The dimension's value once symbols are bound.
    pub fn resolve(&self, bindings: &Bindings) -> Option<u64> {
        match self {
            Dim::Const(n) => Some(*n),
            Dim::Sym(s) => bindings.get(s).copied(),
        }
    }
}

impl From<u64> for Dim {
    fn from(n: u64) -> Dim {
        Dim::Const(n)
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Const(n) => write!(f, "{n}"),
            Dim::Sym(s) => write!(f, "{s}"),
        }
    }
}

/// Values of symbolic dimensions, fixed when a function is specialized.
pub type Bindings = BTreeMap<Symbol, u64>;

/// A shape: a list of dimensions. The empty shape is a scalar.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Shape(pub Vec<Dim>);

impl Shape {
    pub fn scalar() -> Shape {
        Shape(Vec::new())
    }

    pub fn of(dims: &[u64]) -> Shape {
        Shape(dims.iter().map(|&d| Dim::Const(d)).collect())
    }

    pub fn rank(&self) -> usize {
        self.0.len()
    }

    pub fn dims(&self) -> &[Dim] {
        &self.0
    }

    /// The number of elements as a monomial: a constant factor times a sorted
    /// list of symbols. Two shapes hold the same number of elements for every
    /// binding exactly when their monomials are equal.
    pub fn element_count(&self) -> ElementCount {
        let mut constant = 1u128;
        let mut symbols = Vec::new();
        for d in &self.0 {
            match d {
                Dim::Const(n) => constant = constant.saturating_mul(u128::from(*n)),
                Dim::Sym(s) => symbols.push(s.clone()),
            }
        }
        symbols.sort();
        if constant == 0 {
            symbols.clear();
        }
        ElementCount { constant, symbols }
    }

    /// Concrete dimensions once symbols are bound; `None` names no unbound
    /// symbol, so callers report the first symbol that is missing.
    pub fn resolve(&self, bindings: &Bindings) -> Result<Vec<usize>, Symbol> {
        self.0
            .iter()
            .map(|d| match d {
                Dim::Const(n) => Ok(*n as usize),
                Dim::Sym(s) => bindings.get(s).map(|&n| n as usize).ok_or_else(|| s.clone()),
            })
            .collect()
    }

    pub fn is_static(&self) -> bool {
        self.0.iter().all(|d| matches!(d, Dim::Const(_)))
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

/// The number of elements of a shape, symbolically.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElementCount {
    pub constant: u128,
    pub symbols: Vec<Symbol>,
}

impl fmt::Display for ElementCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.constant)?;
        for s in &self.symbols {
            write!(f, "*{s}")?;
        }
        Ok(())
    }
}

/// The type of a tensor value: dtype and shape.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TensorType {
    pub dtype: DType,
    pub shape: Shape,
}

/// The most bytes one tensor may hold (1 TiB): a larger one is an error
/// where it is declared or bound, never a wrapped size or a failed
/// allocation at run time.
pub const MAX_TENSOR_BYTES: u128 = 1 << 40;

impl TensorType {
    pub fn new(dtype: DType, shape: Shape) -> TensorType {
        TensorType { dtype, shape }
    }

    /// Why this type holds more than [`MAX_TENSOR_BYTES`] whatever its
    /// symbols are (each counted as at least 1), if it does.
    pub fn too_large(&self) -> Option<String> {
        let count = self.shape.element_count();
        let bytes = count.constant.saturating_mul(self.dtype.size_bytes() as u128);
        (bytes > MAX_TENSOR_BYTES).then(|| {
            let at_least = if count.symbols.is_empty() { "" } else { "at least " };
            format!("{self} holds {at_least}{bytes} bytes, more than a tensor may ({MAX_TENSOR_BYTES})")
        })
    }

    /// The number of elements once the symbols are bound, if every symbol
    /// is and the tensor holds at most [`MAX_TENSOR_BYTES`].
    pub fn checked_len(&self, bindings: &Bindings) -> Result<u64, String> {
        let mut elements = 1u128;
        for d in &self.shape.0 {
            let n = d.resolve(bindings).ok_or_else(|| format!("symbol {d} has no value"))?;
            elements = elements.saturating_mul(u128::from(n));
        }
        let bytes = elements.saturating_mul(self.dtype.size_bytes() as u128);
        if bytes > MAX_TENSOR_BYTES {
            let shown: Vec<String> = bindings.iter().map(|(s, v)| format!("{s} = {v}")).collect();
            return Err(format!(
                "{self} at {} holds {bytes} bytes, more than a tensor may ({MAX_TENSOR_BYTES})",
                shown.join(", ")
            ));
        }
        Ok(elements as u64)
    }

    pub fn scalar(dtype: DType) -> TensorType {
        TensorType { dtype, shape: Shape::scalar() }
    }

    pub fn rank(&self) -> usize {
        self.shape.rank()
    }
}

impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.dtype, self.shape)
    }
}

/// A float kept as its bit pattern, so ops holding one can derive `Eq` and
/// `Hash`. Equality is bitwise: `0.0` and `-0.0` differ, a NaN equals itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct F64Bits(pub u64);

impl F64Bits {
    pub fn new(x: f64) -> F64Bits {
        F64Bits(x.to_bits())
    }

    pub fn get(self) -> f64 {
        f64::from_bits(self.0)
    }
}

impl fmt::Display for F64Bits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_float(f, self.get())
    }
}

/// Writes a float so that parsing the text gives back the same bits (for
/// every value but NaN payloads): `1.0`, `-0.0`, `1e-8`, `inf`, `nan`.
pub fn write_float(f: &mut impl fmt::Write, x: f64) -> fmt::Result {
    if x.is_nan() {
        f.write_str("nan")
    } else if x.is_infinite() {
        f.write_str(if x > 0.0 { "inf" } else { "-inf" })
    } else {
        write!(f, "{x:?}")
    }
}
