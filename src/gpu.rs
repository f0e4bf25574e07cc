//! Running module functions on an NVIDIA GPU (`--device cuda`, feature
//! `cuda`): like the JIT, each function is lowered to kernel IR once per
//! binding of its symbolic dimensions, then compiled to PTX, loaded through
//! the CUDA driver and cached with its device buffers.

use kiln_ir::Module;
use kiln_ir::interp::{Params, Tensor};
use kiln_runtime::execute::Execute;

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
            kiln_codegen::nvptx::cuda::driver_status().map_err(|why| Error::Usage(format!("--device cuda: {why}")))?;
            Ok(Gpu { module, cache: Default::default() })
        }
        #[cfg(not(feature = "cuda"))]
        {
            let _ = module;
            Err(Error::Usage(
                "--device cuda: this kiln was built without CUDA support: build it with \
                 `cargo build --release --features cuda` (needs LLVM 19: `apt-get install llvm-19-dev`)"
                    .into(),
            ))
        }
    }
}

impl Execute for Gpu<'_> {
    #[cfg(feature = "cuda")]
    fn run(&self, function: &str, inputs: &[Tensor], params: &Params) -> Result<Vec<Tensor>, String> {
        use kiln_codegen::nvptx::cuda::CudaPlan;
        let f = self.module.function(function).ok_or_else(|| format!("no function named `{function}`"))?;
        let bindings = kiln_ir::interp::bind_inputs(f, inputs).map_err(|e| e.to_string())?;
        let key = (function.to_string(), bindings.clone());
        let mut cache = self.cache.borrow_mut();
        if !cache.contains_key(&key) {
            let plan = kiln_passes::lower_to_kernels(self.module, function, &bindings).map_err(|e| e.to_string())?;
            let gpu = CudaPlan::new(&plan)?;
            cache.insert(key.clone(), (plan, gpu));
        }
        let (plan, gpu) = cache.get_mut(&key).expect("just inserted");
        let outputs = kiln_ir::kernel::execute_with(plan, inputs, params, |_, buffers| gpu.run(buffers))?;
        f.output_types()
            .into_iter()
            .zip(outputs)
            .map(|(ty, storage)| {
                let shape = ty.shape.resolve(&bindings).map_err(|s| format!("symbol {s} is unbound"))?;
                Ok(crate::jit::tensor(ty.dtype, &shape, storage))
            })
            .collect()
    }

    #[cfg(not(feature = "cuda"))]
    fn run(&self, _: &str, _: &[Tensor], _: &Params) -> Result<Vec<Tensor>, String> {
        Err("this kiln was built without CUDA support".into())
    }
}
