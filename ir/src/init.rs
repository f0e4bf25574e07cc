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

/// [`initialize_params`], or why memory for a parameter cannot be had: a
/// parameter larger than a tensor may be, or more than the machine gives.
pub fn try_initialize_params(module: &Module, seed: u64) -> Result<Params, String> {
    let mut params = Params::new();
    let mut total = 0u128;
    for p in &module.params {
        if let Some(why) = p.ty.too_large() {
            return Err(format!("parameter `{}`: {why}", p.name));
        }
        // The interpreter holds each element as 8 bytes; ask before making them.
        let count = p.ty.shape.element_count().constant as usize;
        let needs = || {
            format!(
                "parameter `{}` ({}) needs {} bytes of memory, more than this machine gives",
                p.name,
                p.ty,
                count * 8
            )
        };
        total += count as u128 * 8;
        if physical_memory().is_some_and(|memory| total > memory) {
            return Err(needs());
        }
        let mut probe: Vec<f64> = Vec::new();
        probe.try_reserve_exact(count).map_err(|_| needs())?;
        drop(probe);
        params.insert(p.name.clone(), initialize(p, seed));
    }
    Ok(params)
}

/// The machine's memory in bytes, where the system says (Linux).
fn physical_memory() -> Option<u128> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u128 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
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
