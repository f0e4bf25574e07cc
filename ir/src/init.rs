//! Drawing parameters' first values from their [`Init`] declarations.
//!
//! Each parameter draws from its own stream of the counter-based generator,
//! derived from its name, so a seed gives the same values bit for bit whatever
//! the order in which parameters are declared or initialized.

use ndarray::{ArrayD, IxDyn};

use crate::graph::{Init, Module, ParamDecl};
use crate::interp::{Params, Tensor};
use crate::random;

/// Values for every parameter of `module`, drawn with `seed`.
pub fn initialize_params(module: &Module, seed: u64) -> Params {
    module.params.iter().map(|p| (p.name.clone(), initialize(p, seed))).collect()
}

/// The first value of one parameter.
pub fn initialize(decl: &ParamDecl, seed: u64) -> Tensor {
    let shape: Vec<usize> = decl.ty.shape.0.iter().map(|d| d.as_const().unwrap_or(0) as usize).collect();
    let stream = random::stream_of(&decl.name);
    let (fan_in, fan_out) = fans(&shape);
    let sample = |i: usize| -> f64 {
        let i = i as u64;
        match decl.init {
            Init::Zeros => 0.0,
            Init::Ones => 1.0,
            Init::Normal { mean, std } => mean.get() + std.get() * random::normal(seed, stream, i),
            Init::Uniform { low, high } => low.get() + (high.get() - low.get()) * random::uniform(seed, stream, i),
            Init::XavierUniform => {
                let bound = (6.0 / (fan_in + fan_out).max(1.0)).sqrt();
                bound * (2.0 * random::uniform(seed, stream, i) - 1.0)
            }
            Init::KaimingNormal => (2.0 / fan_in.max(1.0)).sqrt() * random::normal(seed, stream, i),
        }
    };
    let count: usize = shape.iter().product();
    let values: Vec<f64> = (0..count).map(sample).collect();
    let array = ArrayD::from_shape_vec(IxDyn(&shape), values).expect("one value per element");
    if decl.ty.dtype.is_float() {
        Tensor::float(decl.ty.dtype, array)
    } else if decl.ty.dtype.is_int() {
        Tensor::int(decl.ty.dtype, array.mapv(|x| x as i64))
    } else {
        Tensor::bool(array.mapv(|x| x != 0.0))
    }
}

/// Fan-in and fan-out as documented on [`Init`].
fn fans(shape: &[usize]) -> (f64, f64) {
    match shape {
        [] => (1.0, 1.0),
        [n] => (*n as f64, *n as f64),
        [i, o] => (*i as f64, *o as f64),
        [o, i, kernel @ ..] => {
            let k: usize = kernel.iter().product();
            ((i * k) as f64, (o * k) as f64)
        }
    }
}
