//! Running module functions as native code: each function is lowered to
//! kernel IR and compiled with Cranelift once, with its sizes symbolic (the
//! sizes of its first call are the hint its size-dependent choices are
//! taken at), then cached; every later call runs the same machine code at
//! its own sizes, on an arena laid out for them (the last few kept).
//!
//! A training loop runs on a [`ResidentSession`]: the parameters stay in
//! host buffers of their own dtype (f32) between steps, so a step converts
//! only its batch in and its loss out; updated parameters are copied
//! buffer to buffer, never through f64 tensors.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use kiln_codegen::{Arena, CompiledPlan, HostBuffer};
use kiln_ir::interp::{Data, Params, Tensor, bind_inputs, bind_shapes};
use kiln_ir::kernel::{BufferRole, Storage};
use kiln_ir::{Bindings, DType, Module, TensorType};
use kiln_runtime::execute::{ExecError, Execute, HostData, HostTensor, Outputs, Session, updated_outputs};
use ndarray::{ArrayD, IxDyn};

/// A module whose functions run as compiled code.
pub struct Jit<'m> {
    module: &'m Module,
    cache: RefCell<HashMap<String, Compiled>>,
    /// How many functions were compiled (each once).
    compilations: std::cell::Cell<usize>,
}

/// A compiled function and the arenas its calls run on, one per binding of
/// its sizes, most recently used last (allocated once each).
struct Compiled {
    plan: Rc<CompiledPlan>,
    arenas: RefCell<Vec<Rc<RefCell<Arena>>>>,
    /// The plan specialized and compiled at sizes below its symbols' least
    /// values (an empty batch, N = 0), which the symbolic plan is not
    /// proved for, with the arena it runs on.
    degenerate: RefCell<Vec<(Bindings, Rc<CompiledPlan>, SharedArena)>>,
}

/// An arena shared between the cache and the call running on it.
type SharedArena = Rc<RefCell<Arena>>;

/// Arenas kept per function: a training epoch needs two (the full batches
/// and the last, partial one), an evaluation two more.
const ARENAS: usize = 4;

impl<'m> Jit<'m> {
    /// A JIT for `module`'s functions; nothing is compiled until a call.
    pub fn new(module: &'m Module) -> Jit<'m> {
        Jit { module, cache: RefCell::new(HashMap::new()), compilations: std::cell::Cell::new(0) }
    }

    /// The compiled plan of `function`, compiling it on first use with
    /// `bindings` as the size hint (later calls reuse it at any sizes).
    pub fn compiled(&self, function: &str, bindings: &Bindings) -> Result<Rc<CompiledPlan>, ExecError> {
        self.entry(function, bindings).map(|(plan, _)| plan)
    }

    /// How many functions this JIT has compiled: each function once,
    /// whatever sizes it ran at.
    pub fn compilations(&self) -> usize {
        self.compilations.get()
    }

    fn entry(&self, function: &str, bindings: &Bindings) -> Result<(Rc<CompiledPlan>, Rc<RefCell<Arena>>), ExecError> {
        let failed =
            |e: Box<dyn std::error::Error + Send + Sync>| ExecError::Compile { function: function.into(), source: e };
        if !self.cache.borrow().contains_key(function) {
            let plan = kiln_passes::compile_plan(self.module, function, bindings).map_err(|e| failed(e.into()))?;
            let compiled = Rc::new(kiln_codegen::compile_plan(&plan).map_err(|e| failed(e.into()))?);
            self.compilations.set(self.compilations.get() + 1);
            let entry = Compiled { plan: compiled, arenas: RefCell::default(), degenerate: RefCell::default() };
            self.cache.borrow_mut().insert(function.to_string(), entry);
        }
        let cache = self.cache.borrow();
        let Some(c) = cache.get(function) else {
            return Err(ExecError::NoFunction(function.into()));
        };
        // The sizes the plan has: a symbol only an unused input has is gone
        // from it, and its value with it.
        let symbols = &c.plan.plan().symbols;
        let bindings: &Bindings = &bindings
            .iter()
            .filter(|(s, _)| symbols.iter().any(|d| &d.symbol == *s))
            .map(|(s, v)| (s.clone(), *v))
            .collect();
        let below = symbols.iter().any(|s| bindings.get(&s.symbol).is_some_and(|&v| v < s.min));
        if below {
            return self.degenerate(c, function, bindings);
        }
        let mut arenas = c.arenas.borrow_mut();
        let position = arenas.iter().position(|a| a.borrow().bindings() == bindings);
        let arena = match position {
            Some(p) => arenas.remove(p),
            None => {
                let arena = c
                    .plan
                    .arena(bindings)
                    .map_err(|e| ExecError::Run { function: function.into(), message: e.to_string() })?;
                if arenas.len() >= ARENAS {
                    arenas.remove(0);
                }
                Rc::new(RefCell::new(arena))
            }
        };
        arenas.push(arena.clone());
        Ok((c.plan.clone(), arena))
    }

    /// The plan of `c` specialized to `bindings` (sizes below the least
    /// values the symbolic plan is proved for), verified and compiled on
    /// first use.
    fn degenerate(
        &self,
        c: &Compiled,
        function: &str,
        bindings: &Bindings,
    ) -> Result<(Rc<CompiledPlan>, Rc<RefCell<Arena>>), ExecError> {
        let failed =
            |e: Box<dyn std::error::Error + Send + Sync>| ExecError::Compile { function: function.into(), source: e };
        if let Some((_, plan, arena)) = c.degenerate.borrow().iter().find(|d| &d.0 == bindings) {
            return Ok((plan.clone(), arena.clone()));
        }
        let plan = c.plan.plan().specialize(bindings);
        kiln_ir::kernel::verify_plan(&plan).map_err(|e| failed(e.into()))?;
        let compiled = Rc::new(kiln_codegen::compile_plan(&plan).map_err(|e| failed(e.into()))?);
        let arena = compiled.arena(&Bindings::new()).map_err(|e| failed(e.into()))?;
        let arena = Rc::new(RefCell::new(arena));
        c.degenerate.borrow_mut().push((bindings.clone(), compiled.clone(), arena.clone()));
        Ok((compiled, arena))
    }
}

impl Execute for Jit<'_> {
    fn run(&self, function: &str, inputs: &[Tensor], params: &Params) -> Outputs {
        let f = self.module.function(function).ok_or_else(|| ExecError::NoFunction(function.into()))?;
        let bindings = bind_inputs(f, inputs)?;
        let (compiled, arena) = self.entry(function, &bindings)?;
        let outputs = execute(&compiled, &mut arena.borrow_mut(), inputs, params, |name, value| {
            check_param(self.module, name, value)
        })?;
        output_tensors(&f.output_types(), &bindings, outputs)
    }

    fn session<'s>(&'s self, params: Params) -> Box<dyn Session + 's> {
        Box::new(ResidentSession { jit: self, given: params, resident: RefCell::new(HashMap::new()) })
    }
}

/// An error unless `value` has the declared type of parameter `name`.
fn check_param(module: &Module, name: &str, value: &Tensor) -> Result<(), ExecError> {
    let expected = module.param(name).map(|p| p.ty.clone());
    if Some(value.tensor_type()) == expected {
        Ok(())
    } else {
        let expected = expected.map_or_else(|| "a parameter of the module".to_string(), |t| t.to_string());
        Err(ExecError::ParamType { name: name.into(), expected, got: value.tensor_type().to_string() })
    }
}

/// Output buffers as tensors of the function's output `types`.
fn output_tensors(types: &[&TensorType], bindings: &Bindings, outputs: Vec<Storage>) -> Outputs {
    types
        .iter()
        .zip(outputs)
        .map(|(ty, storage)| {
            let shape = ty.shape.resolve(bindings).map_err(|s| ExecError::Unbound(s.to_string()))?;
            Ok(tensor(ty.dtype, &shape, storage))
        })
        .collect()
}

/// A training session on compiled code: each parameter is converted from
/// its tensor once, on first use, into a host buffer of its dtype, which
/// is copied into the arena before every call; the outputs that update
/// parameters are copied back into those buffers after the call and never
/// become tensors. [`Session::params`] converts them when asked.
pub struct ResidentSession<'j, 'm> {
    jit: &'j Jit<'m>,
    /// The parameters the session started from.
    given: Params,
    /// Every parameter used so far, in its dtype, as the plans hold it.
    resident: RefCell<HashMap<String, HostBuffer>>,
}

/// A call's inputs: tensors, or host tensors a data loader made.
#[derive(Clone, Copy)]
enum Inputs<'a> {
    Tensors(&'a [Tensor]),
    Host(&'a [HostTensor]),
}

impl Inputs<'_> {
    fn bindings(self, f: &kiln_ir::Function) -> Result<Bindings, ExecError> {
        match self {
            Inputs::Tensors(t) => bind_inputs(f, t),
            Inputs::Host(h) => {
                if let Some(t) = h.iter().find(|t| t.shape.iter().product::<usize>() != t.len()) {
                    return Err(ExecError::HostShape { shape: t.shape.clone(), elements: t.len() });
                }
                let types: Vec<(DType, &[usize])> = h.iter().map(|t| (t.dtype(), t.shape.as_slice())).collect();
                bind_shapes(f, &types)
            }
        }
        .map_err(ExecError::from)
    }

    /// Writes input `n` into buffer `buffer` of `arena`.
    fn write(self, arena: &mut Arena, buffer: usize, n: u32) -> Result<(), Partial> {
        match self {
            Inputs::Tensors(t) => write_input(arena, buffer, t, n),
            Inputs::Host(h) => match &h.get(n as usize).ok_or(ExecError::MissingInput(n))?.data {
                HostData::F32(v) => arena.write_elements(buffer, v).map_err(Partial::Run),
                HostData::I32(v) => arena.write_elements(buffer, v).map_err(Partial::Run),
                HostData::I64(v) => arena.write_elements(buffer, v).map_err(Partial::Run),
            },
        }
    }
}

impl ResidentSession<'_, '_> {
    /// Runs `function` with the session's parameters and returns its output
    /// buffers; the last `updates.len()` go into the parameters they name
    /// instead of being read out.
    fn call(&self, function: &str, inputs: Inputs<'_>, updates: &[String]) -> Outputs {
        self.call_partial(function, inputs, updates).map_err(|e| e.in_function(function))
    }

    fn call_partial(&self, function: &str, inputs: Inputs<'_>, updates: &[String]) -> Result<Vec<Tensor>, Partial> {
        let module = self.jit.module;
        let f = module.function(function).ok_or_else(|| ExecError::NoFunction(function.into()))?;
        let bindings = inputs.bindings(f)?;
        let kept = updated_outputs(function, f.outputs.len(), updates)?;
        let (compiled, arena) = self.jit.entry(function, &bindings)?;
        let mut arena = arena.borrow_mut();
        let plan = compiled.plan();
        let mut resident = self.resident.borrow_mut();
        for (b, decl) in plan.buffers.iter().enumerate() {
            match &decl.role {
                BufferRole::Input(n) => inputs.write(&mut arena, b, *n)?,
                BufferRole::Param(name) => {
                    if !resident.contains_key(name) {
                        let value = self.given.get(name).ok_or_else(|| ExecError::MissingParam(name.clone()))?;
                        check_param(module, name, value)?;
                        resident.insert(name.clone(), HostBuffer::from_tensor(value));
                    }
                    arena.write_bytes(b, &resident[name]).map_err(Partial::Run)?;
                }
                _ => {}
            }
        }
        compiled.run_arena(&mut arena).map_err(|e| Partial::Run(e.to_string()))?;
        // Every update is checked before any parameter changes, so that a
        // failed call leaves the session as it was.
        let mut outputs: Vec<(u32, Storage)> = Vec::new();
        let mut updated = Vec::new();
        for (b, decl) in plan.buffers.iter().enumerate() {
            let BufferRole::Output(n) = decl.role else { continue };
            let Some(name) = (n as usize).checked_sub(kept).map(|u| &updates[u]) else {
                outputs.push((n, arena.read(b)));
                continue;
            };
            let param = module
                .param(name)
                .ok_or_else(|| ExecError::NotAParam { function: function.into(), name: name.clone() })?;
            let len = param.ty.shape.resolve(&Bindings::new()).map(|s| s.iter().product::<usize>());
            let decl_len = decl.len.eval(&bindings).map(|n| n as usize);
            if param.ty.dtype != decl.dtype || len.ok() != decl_len {
                return Err(ExecError::UpdateType {
                    function: function.into(),
                    output: n,
                    got: format!("{}[{}]", decl.dtype, decl.len),
                    name: name.clone(),
                    expected: param.ty.to_string(),
                }
                .into());
            }
            updated.push((b, name, decl));
        }
        for (b, name, decl) in updated {
            let target = resident
                .entry(name.clone())
                .or_insert_with(|| HostBuffer::zeros(decl.dtype, decl.len.eval(&bindings).unwrap_or(0) as usize));
            arena.read_into(b, target).map_err(Partial::Run)?;
        }
        outputs.sort_by_key(|o| o.0);
        Ok(output_tensors(&f.output_types()[..kept], &bindings, outputs.into_iter().map(|o| o.1).collect())?)
    }
}

impl Session for ResidentSession<'_, '_> {
    fn run(&self, function: &str, inputs: &[Tensor]) -> Outputs {
        self.call(function, Inputs::Tensors(inputs), &[])
    }

    fn run_updating(&mut self, function: &str, inputs: &[Tensor], updates: &[String]) -> Outputs {
        self.call(function, Inputs::Tensors(inputs), updates)
    }

    fn run_host(&self, function: &str, inputs: &[HostTensor]) -> Outputs {
        self.call(function, Inputs::Host(inputs), &[])
    }

    fn run_updating_host(&mut self, function: &str, inputs: &[HostTensor], updates: &[String]) -> Outputs {
        self.call(function, Inputs::Host(inputs), updates)
    }

    fn params(&self) -> Result<Params, ExecError> {
        let mut params = self.given.clone();
        for (name, buffer) in self.resident.borrow().iter() {
            let ty = &self.jit.module.param(name).ok_or_else(|| ExecError::MissingParam(name.clone()))?.ty;
            let shape = ty.shape.resolve(&Bindings::new()).map_err(|s| ExecError::Unbound(s.to_string()))?;
            params.insert(name.clone(), tensor(ty.dtype, &shape, buffer.to_storage()));
        }
        Ok(params)
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
    check: impl Fn(&str, &Tensor) -> Result<(), ExecError>,
) -> Result<Vec<Storage>, ExecError> {
    let mut run = || -> Result<Vec<Storage>, Partial> {
        let plan = compiled.plan();
        for (b, decl) in plan.buffers.iter().enumerate() {
            match &decl.role {
                BufferRole::Input(n) => write_input(arena, b, inputs, *n)?,
                BufferRole::Param(name) => {
                    let value = params.get(name).ok_or_else(|| ExecError::MissingParam(name.clone()))?;
                    check(name, value)?;
                    arena.write(b, value).map_err(Partial::Run)?;
                }
                _ => {}
            }
        }
        compiled.run_arena(arena).map_err(|e| Partial::Run(e.to_string()))?;
        let mut outputs: Vec<(u32, Storage)> = plan
            .buffers
            .iter()
            .enumerate()
            .filter_map(|(b, d)| if let BufferRole::Output(n) = d.role { Some((n, arena.read(b))) } else { None })
            .collect();
        outputs.sort_by_key(|o| o.0);
        Ok(outputs.into_iter().map(|o| o.1).collect())
    };
    run().map_err(|e| e.in_function(&compiled.plan().name))
}

/// Writes input `n` of `inputs` into buffer `buffer` of `arena`.
fn write_input(arena: &mut Arena, buffer: usize, inputs: &[Tensor], n: u32) -> Result<(), Partial> {
    let value = inputs.get(n as usize).ok_or(ExecError::MissingInput(n))?;
    arena.write(buffer, value).map_err(Partial::Run)
}

/// An error of a call before the function's name is attached: a typed
/// one, or a failure of the compiled code or its arena, in words.
enum Partial {
    Exec(ExecError),
    Run(String),
}

impl From<ExecError> for Partial {
    fn from(e: ExecError) -> Partial {
        Partial::Exec(e)
    }
}

impl From<kiln_ir::interp::EvalError> for Partial {
    fn from(e: kiln_ir::interp::EvalError) -> Partial {
        Partial::Exec(e.into())
    }
}

impl Partial {
    /// The error of a call of `function`.
    fn in_function(self, function: &str) -> ExecError {
        match self {
            Partial::Exec(e) => e,
            Partial::Run(message) => ExecError::Run { function: function.into(), message },
        }
    }
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
