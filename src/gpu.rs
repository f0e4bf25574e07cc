//! Running module functions on an NVIDIA GPU (`--device cuda`, feature
//! `cuda`): like the JIT, each function is lowered to kernel IR once per
//! binding of its symbolic dimensions, then compiled to PTX, loaded through
//! the CUDA driver and cached with its device buffers.

use kiln_ir::Module;
use kiln_ir::interp::{Params, Tensor};
use kiln_runtime::execute::{ExecError, Execute, Outputs};

use crate::Error;

/// A module whose functions run on GPU 0.
pub struct Gpu<'m> {
    #[allow(dead_code)]
    module: &'m Module,
    #[cfg(feature = "cuda")]
    cache: std::cell::RefCell<
        std::collections::HashMap<
            (String, kiln_ir::Bindings),
            (kiln_ir::kernel::Plan, kiln_codegen::nvptx::cuda::CudaPlan),
        >,
    >,
}

impl<'m> Gpu<'m> {
    /// Opens the GPU; an error says why there is none to run on.
    pub fn new(module: &'m Module) -> Result<Gpu<'m>, Error> {
        #[cfg(feature = "cuda")]
        {
            kiln_codegen::nvptx::cuda::driver_status().map_err(Error::NoDevice)?;
            Ok(Gpu { module, cache: Default::default() })
        }
        #[cfg(not(feature = "cuda"))]
        {
            let _ = module;
            Err(Error::NoDevice(
                "this kiln was built without CUDA support: build it with \
                 `cargo build --release --features cuda` (needs LLVM 19: `apt-get install llvm-19-dev`)"
                    .into(),
            ))
        }
    }
}

impl Execute for Gpu<'_> {
    #[cfg(feature = "cuda")]
    fn run(&self, function: &str, inputs: &[Tensor], params: &Params) -> Outputs {
        use kiln_codegen::nvptx::cuda::CudaPlan;
        let f = self.module.function(function).ok_or_else(|| ExecError::NoFunction(function.into()))?;
        let bindings = kiln_ir::interp::bind_inputs(f, inputs)?;
        let key = (function.to_string(), bindings.clone());
        let mut cache = self.cache.borrow_mut();
        if !cache.contains_key(&key) {
            // The GPU backend compiles plans at one binding of their sizes.
            let plan = kiln_passes::compile_plan(self.module, function, &bindings)
                .map_err(|e| ExecError::Compile { function: function.into(), source: e.into() })?
                .specialize(&bindings);
            let gpu = CudaPlan::new(&plan).map_err(ExecError::Device)?;
            cache.insert(key.clone(), (plan, gpu));
        }
        let (plan, gpu) = cache.get_mut(&key).expect("just inserted");
        let outputs = kiln_ir::kernel::execute_with(plan, &kiln_ir::Bindings::new(), inputs, params, |_, buffers| {
            gpu.run(buffers)
        })
        .map_err(|message| ExecError::Run { function: function.into(), message })?;
        f.output_types()
            .into_iter()
            .zip(outputs)
            .map(|(ty, storage)| {
                let shape = ty.shape.resolve(&bindings).map_err(|s| ExecError::Unbound(s.to_string()))?;
                Ok(crate::jit::tensor(ty.dtype, &shape, storage))
            })
            .collect()
    }

    #[cfg(not(feature = "cuda"))]
    fn run(&self, _: &str, _: &[Tensor], _: &Params) -> Outputs {
        Err(ExecError::Device("this kiln was built without CUDA support".into()))
    }
}
