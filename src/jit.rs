//! Running module functions as native code: each function is lowered to
//! kernel IR and compiled with Cranelift once per binding of its symbolic
//! dimensions (a batch size), then cached.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use kiln_codegen::{Arena, CompiledPlan};
use kiln_ir::interp::{Data, Params, Tensor, bind_inputs};
use kiln_ir::kernel::{BufferRole, Storage};
use kiln_ir::{Bindings, DType, Module};
use kiln_runtime::execute::Execute;
use ndarray::{ArrayD, IxDyn};

/// A module whose functions run as compiled code.
pub struct Jit<'m> {
    module: &'m Module,
    cache: RefCell<HashMap<(String, Bindings), Compiled>>,
}

/// A compiled function and the arena its calls run on (allocated once).
struct Compiled {
    plan: Rc<CompiledPlan>,
    arena: Rc<RefCell<Arena>>,
}

impl<'m> Jit<'m> {
    pub fn new(module: &'m Module) -> Jit<'m> {
        Jit { module, cache: RefCell::new(HashMap::new()) }
    }

    /// The compiled plan of `function` for `bindings`, compiling it on first use.
    pub fn compiled(&self, function: &str, bindings: &Bindings) -> Result<Rc<CompiledPlan>, String> {
        self.entry(function, bindings).map(|(plan, _)| plan)
    }

    fn entry(&self, function: &str, bindings: &Bindings) -> Result<(Rc<CompiledPlan>, Rc<RefCell<Arena>>), String> {
        let key = (function.to_string(), bindings.clone());
        if let Some(c) = self.cache.borrow().get(&key) {
            return Ok((c.plan.clone(), c.arena.clone()));
        }
        let plan = kiln_passes::lower_to_kernels(self.module, function, bindings).map_err(|e| e.to_string())?;
        let compiled = Rc::new(kiln_codegen::compile_plan(&plan).map_err(|e| e.to_string())?);
        let arena = Rc::new(RefCell::new(compiled.arena()));
        self.cache.borrow_mut().insert(key, Compiled { plan: compiled.clone(), arena: arena.clone() });
        Ok((compiled, arena))
    }
}

impl Execute for Jit<'_> {
    fn run(&self, function: &str, inputs: &[Tensor], params: &Params) -> Result<Vec<Tensor>, String> {
        let f = self.module.function(function).ok_or_else(|| format!("no function named `{function}`"))?;
        let bindings = bind_inputs(f, inputs).map_err(|e| e.to_string())?;
        let (compiled, arena) = self.entry(function, &bindings)?;
        let outputs = execute(&compiled, &mut arena.borrow_mut(), inputs, params, |name, value| {
            let expected = self.module.param(name).map(|p| p.ty.clone());
            if Some(value.tensor_type()) == expected {
                Ok(())
            } else {
                let expected = expected.map_or_else(String::new, |t| t.to_string());
                Err(format!("parameter `{name}` must be {expected}, got {}", value.tensor_type()))
            }
        })?;
        f.output_types()
            .into_iter()
            .zip(outputs)
            .map(|(ty, storage)| {
                let shape = ty.shape.resolve(&bindings).map_err(|s| format!("symbol {s} is unbound"))?;
                Ok(tensor(ty.dtype, &shape, storage))
            })
            .collect()
    }
}

/// Runs a compiled plan on tensors in `arena` (made by the plan): writes
/// its inputs and parameters (after `check` accepts each parameter), runs
/// it, and returns its output buffers in order.
pub fn execute(
    compiled: &CompiledPlan,
    arena: &mut Arena,
    inputs: &[Tensor],
    params: &Params,
    check: impl Fn(&str, &Tensor) -> Result<(), String>,
) -> Result<Vec<Storage>, String> {
    let plan = compiled.plan();
    for (b, decl) in plan.buffers.iter().enumerate() {
        match &decl.role {
            BufferRole::Input(n) => {
                let value = inputs.get(*n as usize).ok_or_else(|| format!("input {n} is missing"))?;
                arena.write(b, value)?;
            }
            BufferRole::Param(name) => {
                let value = params.get(name).ok_or_else(|| format!("parameter `{name}` has no value"))?;
                check(name, value)?;
                arena.write(b, value)?;
            }
            _ => {}
        }
    }
    compiled.run_arena(arena).map_err(|e| e.to_string())?;
    let mut outputs: Vec<(u32, Storage)> = plan
        .buffers
        .iter()
        .enumerate()
        .filter_map(|(b, d)| if let BufferRole::Output(n) = d.role { Some((n, arena.read(b))) } else { None })
        .collect();
    outputs.sort_by_key(|o| o.0);
    Ok(outputs.into_iter().map(|o| o.1).collect())
}

/// A tensor of `shape` from a buffer's elements, which already have the
/// dtype's precision (so no rounding pass is needed).
pub(crate) fn tensor(dtype: DType, shape: &[usize], storage: Storage) -> Tensor {
    let dim = IxDyn(shape);
    let data = match storage {
        Storage::Float(v) => Data::Float(ArrayD::from_shape_vec(dim, v).expect("the plan sized the buffer")),
        Storage::Int(v) => Data::Int(ArrayD::from_shape_vec(dim, v).expect("the plan sized the buffer")),
        Storage::Bool(v) => Data::Bool(ArrayD::from_shape_vec(dim, v).expect("the plan sized the buffer")),
    };
    Tensor { dtype, data }
}
