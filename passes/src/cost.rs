//! The cost model: time = bytes moved between memory and registers divided
//! by the machine's bandwidth, plus flops divided by its peak, plus a fixed
//! overhead per kernel launched.
//!
//! Simplification (extraction from the e-graph) and fusion (inline or
//! materialize) both minimize this one model. Symbolic dimensions are priced
//! at [`Machine::symbol_size`] unless bound. Documented in docs/optimization.md.

use kiln_ir::{Bindings, Dim, Op, Shape, TensorType, UnaryOp};

/// The machine the model prices work on.
#[derive(Clone, Debug)]
pub struct Machine {
    /// Streaming bandwidth, bytes per second.
    pub bandwidth: f64,
    /// Sustained arithmetic rate, flops per second.
    pub peak_flops: f64,
    /// Seconds a kernel costs whatever it does (dispatch, loop setup, a
    /// thread-pool fork and join).
    pub kernel_overhead: f64,
    /// The size assumed for an unbound symbolic dimension.
    pub symbol_size: u64,
    /// Sizes of bound symbols (the batch size a plan is compiled for).
    pub bindings: Bindings,
}

impl Default for Machine {
    /// This project's reference machine: 2 cores at 2.3 GHz, ~12 GB/s copy
    /// bandwidth measured by `cargo bench --bench kiln -- bandwidth`, ~50
    /// GFLOP/s sustained f32x4 FMA across both cores, ~2 µs per parallel
    /// kernel dispatch, batch 256.
    fn default() -> Machine {
        Machine {
            bandwidth: 12e9,
            peak_flops: 50e9,
            kernel_overhead: 2e-6,
            symbol_size: 256,
            bindings: Bindings::new(),
        }
    }
}

/// Bytes moved and flops done.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Work {
    pub bytes: f64,
    pub flops: f64,
}

impl std::ops::AddAssign for Work {
    fn add_assign(&mut self, other: Work) {
        self.bytes += other.bytes;
        self.flops += other.flops;
    }
}

impl Machine {
    /// Seconds the work takes on this machine (without kernel overheads).
    pub fn seconds(&self, work: Work) -> f64 {
        work.bytes / self.bandwidth + work.flops / self.peak_flops
    }

    /// The number of elements of `shape`.
    pub fn elements(&self, shape: &Shape) -> f64 {
        shape
            .0
            .iter()
            .map(|d| match d {
                Dim::Const(n) => *n as f64,
                Dim::Sym(s) => self.bindings.get(s).map_or(self.symbol_size as f64, |&n| n as f64),
            })
            .product()
    }

    /// The bytes of a tensor of type `ty`.
    pub fn bytes(&self, ty: &TensorType) -> f64 {
        self.elements(&ty.shape) * ty.dtype.size_bytes() as f64
    }
}

/// Flops to compute one element of an elementwise op: `exp` is a short
/// polynomial in the vector unit; log, tanh, sin, cos and pow are libm
/// calls per element, priced at what the vector unit would do meanwhile.
pub fn flops_per_element(op: &Op) -> f64 {
    match op {
        // A polynomial in the vector unit.
        Op::Unary(UnaryOp::Exp) => 20.0,
        // A libm call per element (about 40 cycles).
        Op::Unary(UnaryOp::Log | UnaryOp::Tanh | UnaryOp::Sin | UnaryOp::Cos) => 100.0,
        Op::Binary(kiln_ir::BinaryOp::Pow) => 200.0,
        Op::Unary(UnaryOp::Sqrt | UnaryOp::Recip) | Op::Binary(kiln_ir::BinaryOp::Div) => 4.0,
        Op::RandomBits { .. } => 4.0,
        Op::Unary(_) | Op::Binary(_) | Op::Compare(_) | Op::Select | Op::Cast { .. } => 1.0,
        _ => 0.0,
    }
}

/// Flops of `op` applied to operands of types `args` giving `out`.
pub fn flops(machine: &Machine, op: &Op, args: &[&TensorType], out: &TensorType) -> f64 {
    let out_elems = machine.elements(&out.shape);
    match op {
        Op::MatMul => {
            let k = args[0].shape.0.last().map_or(1.0, |d| machine.elements(&Shape(vec![d.clone()])));
            2.0 * out_elems * k
        }
        // Each output element is a dot product over one group's input channels and the window.
        Op::Conv(_) => 2.0 * out_elems * machine.elements(&Shape(args[1].shape.0[1..].to_vec())),
        // Each element of `g` is multiplied by a weight per input channel and window position.
        Op::ConvTranspose { .. } => {
            2.0 * machine.elements(&args[0].shape) * machine.elements(&Shape(args[1].shape.0[1..].to_vec()))
        }
        Op::Reduce { .. } => machine.elements(&args[0].shape),
        Op::ReduceWindow { window, .. } => out_elems * window.iter().product::<u64>() as f64,
        _ => out_elems * flops_per_element(op),
    }
}
