//! Running a plan's PTX on an NVIDIA GPU through the CUDA driver API
//! (feature `cuda`, with `cudarc` loading the driver library at run time, so
//! building needs no CUDA). A [`CudaPlan`] compiles the plan for the
//! device's architecture, loads the module, allocates every buffer once, and
//! each [`CudaPlan::run`] copies the inputs and parameters in, launches
//! every entry of the manifest in order on one stream, synchronizes, checks
//! the status word and copies the outputs out.
//!
//! Guarantee: without a driver or a device, [`CudaPlan::new`] and
//! [`driver_status`] return an error that says so; nothing panics.

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaFunction, CudaSlice, CudaStream, LaunchConfig, PushKernelArg};
use kiln_ir::kernel::{BufferRole, Plan, Storage};

use super::emulate::Memory;
use super::expr::{STATUS_DIVISION_BY_ZERO, STATUS_INDEX_OUT_OF_RANGE};
use super::launch::launches;
use super::{SUPPORTED_SMS, Sm, emit_ptx};

/// Whether a CUDA driver and a device are there: `Ok(description)` or why not.
pub fn driver_status() -> Result<String, String> {
    // SAFETY: only tries to open the driver library.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err("no CUDA driver (libcuda.so) on this machine".into());
    }
    let count = CudaContext::device_count().map_err(|e| format!("the CUDA driver reports: {e}"))?;
    if count < 1 {
        return Err("the CUDA driver sees no GPU".into());
    }
    let ctx = CudaContext::new(0).map_err(|e| format!("cannot open GPU 0: {e}"))?;
    let name = ctx.name().unwrap_or_else(|_| "GPU 0".into());
    let (major, minor) = ctx.compute_capability().map_err(|e| e.to_string())?;
    Ok(format!("{name} (compute capability {major}.{minor})"))
}

/// The newest architecture kiln emits for that the device runs: its own,
/// or an older one whose PTX the driver compiles for it.
fn sm_for(major: i32, minor: i32) -> Result<Sm, String> {
    let device = major * 10 + minor;
    SUPPORTED_SMS
        .iter()
        .filter(|s| !s.ends_with('a'))
        .filter_map(|s| s[3..].parse::<i32>().ok().map(|v| (v, *s)))
        .filter(|(v, _)| *v <= device)
        .max()
        .map(|(_, s)| Sm::parse(s).expect("a supported architecture"))
        .ok_or_else(|| format!("compute capability {major}.{minor} is older than sm_80, which kiln's PTX needs"))
}

/// A plan loaded on the GPU with its buffers.
pub struct CudaPlan {
    plan: Plan,
    stream: Arc<CudaStream>,
    entries: Vec<(CudaFunction, LaunchConfig, Vec<usize>)>,
    buffers: Vec<CudaSlice<u8>>,
    status: CudaSlice<i32>,
    /// The kernel each entry belongs to, for error messages.
    kernels: Vec<String>,
}

impl CudaPlan {
    pub fn new(plan: &Plan) -> Result<CudaPlan, String> {
        if !plan.symbols.is_empty() {
            return Err(format!(
                "the CUDA runner takes a plan specialized to its sizes (`Plan::specialize`); {} has sizes {}",
                plan.name,
                plan.symbols.iter().map(|s| s.symbol.to_string()).collect::<Vec<_>>().join(", ")
            ));
        }
        driver_status()?;
        let ctx = CudaContext::new(0).map_err(|e| e.to_string())?;
        let (major, minor) = ctx.compute_capability().map_err(|e| e.to_string())?;
        let compiled = emit_ptx(plan, sm_for(major, minor)?).map_err(|e| e.to_string())?;
        let module = ctx
            .load_module(cudarc::nvrtc::Ptx::from_src(compiled.ptx))
            .map_err(|e| format!("the driver rejects the PTX: {e}"))?;
        let stream = ctx.default_stream();
        let mut entries = Vec::new();
        let mut kernels = Vec::new();
        for kernel in &plan.kernels {
            for l in launches(plan, kernel) {
                let f = module.load_function(&l.name).map_err(|e| format!("{}: {e}", l.name))?;
                // The plan's sizes are constants (`CudaPlan::new`).
                let grid =
                    l.grid_u32(&kiln_ir::Bindings::new()).map_err(|what| format!("kernel {}: {what}", kernel.name))?;
                let config = LaunchConfig {
                    grid_dim: (grid[0], grid[1], grid[2]),
                    block_dim: (l.block[0], l.block[1], l.block[2]),
                    shared_mem_bytes: 0,
                };
                entries.push((f, config, l.buffers().iter().map(|b| b.0 as usize).collect()));
                kernels.push(kernel.name.clone());
            }
        }
        let mut buffers = Vec::new();
        for b in &plan.buffers {
            let bytes = ((b.len.constant_term() as usize) * b.dtype.size_bytes()).max(1);
            buffers.push(stream.alloc_zeros::<u8>(bytes).map_err(|e| format!("allocating {bytes} bytes: {e}"))?);
        }
        let status = stream.alloc_zeros::<i32>(1).map_err(|e| e.to_string())?;
        Ok(CudaPlan { plan: plan.clone(), stream, entries, buffers, status, kernels })
    }

    /// Runs the plan on `buffers` (one per declared buffer, inputs and
    /// parameters filled in); the outputs are read back into theirs.
    pub fn run(&mut self, buffers: &mut [Storage]) -> Result<(), String> {
        let fail = |e: cudarc::driver::DriverError| format!("CUDA: {e}");
        for (i, decl) in self.plan.buffers.iter().enumerate() {
            if matches!(decl.role, BufferRole::Input(_) | BufferRole::Param(_)) {
                let mut memory = Memory::of(&buffers[i], decl.dtype);
                let bytes = memory.bytes(decl.len.constant_term() as usize, decl.dtype);
                if !bytes.is_empty() {
                    self.stream.memcpy_htod(bytes, &mut self.buffers[i]).map_err(fail)?;
                }
            }
        }
        self.stream.memset_zeros(&mut self.status).map_err(fail)?;
        for (entry, (f, config, args)) in self.entries.iter().enumerate() {
            let mut launch = self.stream.launch_builder(f);
            for &a in args {
                launch.arg(&self.buffers[a]);
            }
            launch.arg(&self.status);
            // SAFETY: the entry takes one pointer per buffer in `args` and
            // the status word, as built; every access is in bounds.
            unsafe { launch.launch(*config) }.map_err(|e| format!("launching {}: {e}", self.kernels[entry]))?;
        }
        self.stream.synchronize().map_err(fail)?;
        let status = self.stream.clone_dtoh(&self.status).map_err(fail)?;
        match status[0] {
            0 => {}
            STATUS_INDEX_OUT_OF_RANGE => return Err("an index is out of range".into()),
            STATUS_DIVISION_BY_ZERO => return Err("integer division by zero".into()),
            code => return Err(format!("status {code}")),
        }
        for (i, decl) in self.plan.buffers.iter().enumerate() {
            if matches!(decl.role, BufferRole::Output(_)) {
                let bytes = self.stream.clone_dtoh(&self.buffers[i]).map_err(fail)?;
                let mut memory = Memory::of(&buffers[i], decl.dtype);
                let n = (decl.len.constant_term() as usize) * decl.dtype.size_bytes();
                memory.bytes(decl.len.constant_term() as usize, decl.dtype).copy_from_slice(&bytes[..n]);
                memory.read(&mut buffers[i], decl.dtype);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_architecture_is_the_newest_the_device_runs() {
        assert_eq!(sm_for(8, 0).unwrap().name(), "sm_80");
        assert_eq!(sm_for(8, 9).unwrap().name(), "sm_89");
        assert_eq!(sm_for(9, 0).unwrap().name(), "sm_90");
        assert_eq!(sm_for(10, 0).unwrap().name(), "sm_90");
        assert!(sm_for(7, 5).unwrap_err().contains("older than sm_80"));
    }
}
