//! Ahead-of-time libraries: plans compiled by the same Cranelift code
//! generator as the JIT into one relocatable object (`cranelift-object`),
//! wrapped as a static archive with a C header.
//!
//! Each exported function becomes a C entry point (`entry.rs`) that checks
//! its arguments, allocates the plan's arena (`aligned_alloc`), copies the
//! inputs in, calls the kernels in order and copies the outputs out. The
//! object needs only the C library and libm: plans must be lowered with
//! GEMM as loop nests (no runtime GEMM), transcendental functions are small
//! wrappers around libm's `exp`, `log`, `sin`, `cos`, `tanh` and `pow`
//! computed in f64 as the JIT does, random bits are inline, and the code
//! is single-threaded. Nothing is global but read-only data (baked
//! parameters), so every entry point is thread-safe.
//!
//! Guarantee: an entry point computes what the JIT computes for the same
//! plan (the AOT tests compare them on every example), and returns a status
//! instead of touching memory when an argument is a null pointer or a size
//! is outside what the library was compiled for.

mod entry;
mod header;

use cranelift_codegen::ir::{AbiParam, InstBuilder, Signature, types};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_module::{DataDescription, DataId, Linkage, Module};
use cranelift_object::{ObjectBuilder, ObjectModule};
use kiln_ir::DType;
use kiln_ir::kernel::{KStmt, Plan, RuntimeCall};

use crate::CodegenError;

pub use header::c_type;

/// Status codes every entry point returns (the header defines them too).
pub mod status {
    pub const OK: i64 = 0;
    pub const NULL_ARGUMENT: i64 = 1;
    pub const BAD_SIZE: i64 = 2;
    pub const OUT_OF_MEMORY: i64 = 3;
    /// `INDEX_OUT_OF_RANGE - 1 + s` for a kernel's status `s` (1 or 2).
    pub const INDEX_OUT_OF_RANGE: i64 = 4;
    pub const DIVISION_BY_ZERO: i64 = 5;
}

/// One dimension of an argument as the caller sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArgDim {
    Const(u64),
    /// A size given at run time, by name.
    Size(String),
}

/// A tensor argument (input or output) of an entry point.
#[derive(Clone, Debug)]
pub struct Arg {
    pub name: String,
    pub dtype: DType,
    pub dims: Vec<ArgDim>,
    /// The plan buffer it is copied into or out of.
    pub buffer: u32,
}

/// A size argument: its name and the greatest value a call may pass (the
/// plan is symbolic, so every value from 1 to it runs the same code on an
/// arena laid out for it).
#[derive(Clone, Debug)]
pub struct Size {
    pub name: String,
    pub compiled: u64,
}

/// One exported function.
#[derive(Clone, Debug)]
pub struct Export {
    /// The kiln function's name (for comments).
    pub function: String,
    /// The C symbol.
    pub symbol: String,
    /// Lowered with `GemmLowering::Loops`, its sizes symbolic (the
    /// maximum sizes are the hint).
    pub plan: Plan,
    pub inputs: Vec<Arg>,
    pub sizes: Vec<Size>,
    pub outputs: Vec<Arg>,
    /// What each output is, for the header (`the loss`, `new fc1.w`).
    pub output_notes: Vec<String>,
}

/// A parameter of the library: baked in (its bytes, native endianness) or
/// passed by the caller in the parameter struct.
#[derive(Clone, Debug)]
pub struct LibParam {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<u64>,
    pub baked: Option<Vec<u8>>,
}

/// What `kiln build` writes.
#[derive(Clone, Debug)]
pub struct Library {
    /// A C identifier: the prefix of every symbol and the header's name.
    pub name: String,
    /// Where it came from, for the header's first line.
    pub source: String,
    pub params: Vec<LibParam>,
    pub exports: Vec<Export>,
}

impl Library {
    /// Whether the entry points take a parameter struct.
    pub fn passes_params(&self) -> bool {
        self.params.iter().any(|p| p.baked.is_none())
    }
}

/// The static archive (`lib<name>.a`, one object inside) and the C header.
pub struct Built {
    pub archive: Vec<u8>,
    pub header: String,
}

/// Compiles the library for this machine.
pub fn build_library(lib: &Library) -> Result<Built, CodegenError> {
    for e in &lib.exports {
        if let Some(k) = e.plan.kernels.iter().find(|k| k.body.iter().any(calls_runtime)) {
            return Err(CodegenError::Unsupported(format!(
                "kernel `{}` of `{}` calls the runtime's GEMM; lower with GEMM as loops",
                k.name, e.function
            )));
        }
    }
    let host = |e: String| CodegenError::Host(e);
    let mut flags = settings::builder();
    flags.set("opt_level", "speed").map_err(|e| host(e.to_string()))?;
    flags.set("is_pic", "true").map_err(|e| host(e.to_string()))?;
    let isa = cranelift_native::builder()
        .map_err(|e| host(e.to_string()))?
        .finish(settings::Flags::new(flags))
        .map_err(|e| host(e.to_string()))?;
    let builder = ObjectBuilder::new(isa, format!("{}.o", lib.name), cranelift_module::default_libcall_names())
        .map_err(|e| host(e.to_string()))?;
    let mut module = ObjectModule::new(builder);
    define_math(&mut module)?;
    let params = declare_params(&mut module, lib)?;
    for e in &lib.exports {
        entry::define(&mut module, lib, e, &params)?;
    }
    let object = module.finish().emit().map_err(|e| host(e.to_string()))?;
    let mut archive = std::io::Cursor::new(Vec::new());
    let member = ar_archive_writer::NewArchiveMember::new(
        object,
        &ar_archive_writer::DEFAULT_OBJECT_READER,
        format!("{}.o", lib.name),
    );
    ar_archive_writer::write_archive_to_stream(
        &mut archive,
        &[member],
        ar_archive_writer::ArchiveKind::Gnu,
        false,
        None,
    )
    .map_err(|e| host(format!("writing the archive: {e}")))?;
    Ok(Built { archive: archive.into_inner(), header: header::header(lib) })
}

fn calls_runtime(s: &KStmt) -> bool {
    let mut calls = false;
    s.walk(&mut |s| calls |= matches!(s, KStmt::Call(RuntimeCall::Gemm { .. })));
    calls
}

/// The data object of each baked parameter (read-only, 64-byte aligned).
fn declare_params(module: &mut ObjectModule, lib: &Library) -> Result<Vec<Option<DataId>>, CodegenError> {
    let fail = |e: String| CodegenError::Host(e);
    lib.params
        .iter()
        .enumerate()
        .map(|(k, p)| {
            let Some(bytes) = &p.baked else { return Ok(None) };
            let id = module
                .declare_data(&format!("{}_param_{k}", lib.name), Linkage::Local, false, false)
                .map_err(|e| fail(e.to_string()))?;
            let mut data = DataDescription::new();
            let mut contents = bytes.clone();
            contents.resize(contents.len().max(1), 0);
            data.define(contents.into_boxed_slice());
            data.set_align(64);
            module.define_data(id, &data).map_err(|e| fail(e.to_string()))?;
            Ok(Some(id))
        })
        .collect()
}

/// The transcendental functions kernels call, as local wrappers of libm's
/// f64 functions: f32 arguments are widened and results rounded, exactly
/// as the JIT's runtime does.
fn define_math(module: &mut ObjectModule) -> Result<(), CodegenError> {
    let fail = |e: String| CodegenError::Host(e);
    for (name, arity) in [("exp", 1), ("log", 1), ("sin", 1), ("cos", 1), ("tanh", 1), ("pow", 2)] {
        let mut libm = Signature::new(module.isa().default_call_conv());
        libm.params.extend(std::iter::repeat_n(AbiParam::new(types::F64), arity));
        libm.returns.push(AbiParam::new(types::F64));
        let libm_id = module.declare_function(name, Linkage::Import, &libm).map_err(|e| fail(e.to_string()))?;
        for ty in [types::F32, types::F64] {
            let mut sig = Signature::new(module.isa().default_call_conv());
            sig.params.extend(std::iter::repeat_n(AbiParam::new(ty), arity));
            sig.returns.push(AbiParam::new(ty));
            let suffix = if ty == types::F32 { "f32" } else { "f64" };
            let id = module
                .declare_function(&format!("kiln_{name}_{suffix}"), Linkage::Local, &sig)
                .map_err(|e| fail(e.to_string()))?;
            let mut ctx = module.make_context();
            ctx.func.signature = sig;
            let mut fctx = FunctionBuilderContext::new();
            let mut b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
            let block = b.create_block();
            b.append_block_params_for_function_params(block);
            b.switch_to_block(block);
            b.seal_block(block);
            let args: Vec<_> = b.block_params(block).to_vec();
            let wide: Vec<_> =
                args.iter().map(|&a| if ty == types::F32 { b.ins().fpromote(types::F64, a) } else { a }).collect();
            let callee = module.declare_func_in_func(libm_id, b.func);
            let call = b.ins().call(callee, &wide);
            let r = b.inst_results(call)[0];
            let r = if ty == types::F32 { b.ins().fdemote(types::F32, r) } else { r };
            b.ins().return_(&[r]);
            b.finalize(module.target_config());
            module.define_function(id, &mut ctx).map_err(|e| fail(format!("{e:?}")))?;
            module.clear_context(&mut ctx);
        }
    }
    Ok(())
}
