//! One exported function: its kernels, compiled as for the JIT, and a C
//! entry point that runs them.
//!
//! The entry point takes, in order: the parameter struct (when the library
//! does not bake its parameters), one pointer per input, one `int64_t` per
//! size, one pointer per output; it returns a status (`super::status`).
//! It checks every pointer and size before touching memory, allocates the
//! plan's arena with `aligned_alloc(64, ...)`, copies the inputs in (rows
//! beyond a smaller batch are zeros), runs the kernels, copies the outputs
//! out (only the rows asked for) and frees the arena.

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{
    AbiParam, Block, FuncRef, InstBuilder, MemFlagsData, Signature, StackSlotData, StackSlotKind, Value, types,
};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_module::{DataId, FuncId, Linkage, Module};
use cranelift_object::ObjectModule;
use kiln_ir::Bindings;
use kiln_ir::kernel::{BufferRole, arena_layout};

use super::{Arg, ArgDim, Export, Library, status};
use crate::CodegenError;
use crate::cranelift::kernel;

fn fail(e: impl std::fmt::Display) -> CodegenError {
    CodegenError::Host(e.to_string())
}

/// Declares and defines the export's kernels and its entry point.
pub fn define(
    module: &mut ObjectModule,
    lib: &Library,
    e: &Export,
    params: &[Option<DataId>],
) -> Result<(), CodegenError> {
    let kernels = define_kernels(module, lib, e)?;
    let pointer = module.target_config().pointer_type();
    let call_conv = module.isa().default_call_conv();
    let signature = |params: &[types::Type], returns: &[types::Type]| {
        let mut s = Signature::new(call_conv);
        s.params.extend(params.iter().map(|&t| AbiParam::new(t)));
        s.returns.extend(returns.iter().map(|&t| AbiParam::new(t)));
        s
    };
    let mut import = |name: &str, s: Signature| module.declare_function(name, Linkage::Import, &s).map_err(fail);
    let memcpy = import("memcpy", signature(&[pointer, pointer, pointer], &[pointer]))?;
    let memset = import("memset", signature(&[pointer, types::I32, pointer], &[pointer]))?;
    let alloc = import("aligned_alloc", signature(&[pointer, pointer], &[pointer]))?;
    let free = import("free", signature(&[pointer], &[]))?;

    let passes_params = lib.passes_params();
    let mut entry_params = Vec::new();
    if passes_params {
        entry_params.push(pointer);
    }
    entry_params.extend(e.inputs.iter().map(|_| pointer));
    entry_params.extend(e.sizes.iter().map(|_| types::I64));
    entry_params.extend(e.outputs.iter().map(|_| pointer));
    let entry_signature = signature(&entry_params, &[types::I32]);
    let id = module.declare_function(&e.symbol, Linkage::Export, &entry_signature).map_err(fail)?;

    let mut ctx = module.make_context();
    ctx.func.signature = entry_signature;
    let mut fctx = FunctionBuilderContext::new();
    let mut b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
    let refs = Imports {
        memcpy: module.declare_func_in_func(memcpy, b.func),
        memset: module.declare_func_in_func(memset, b.func),
        alloc: module.declare_func_in_func(alloc, b.func),
        free: module.declare_func_in_func(free, b.func),
    };
    let start = b.create_block();
    b.append_block_params_for_function_params(start);
    b.switch_to_block(start);
    b.seal_block(start);
    let args: Vec<Value> = b.block_params(start).to_vec();
    let mut at = 0;
    let mut take = |n: usize| {
        let v = args[at..at + n].to_vec();
        at += n;
        v
    };
    let struct_ptr = if passes_params { take(1).first().copied() } else { None };
    let inputs = take(e.inputs.len());
    let sizes = take(e.sizes.len());
    let outputs = take(e.outputs.len());

    // A block returning a status, and one freeing the arena first.
    let returns = b.create_block();
    b.append_block_param(returns, types::I32);
    let frees = b.create_block();
    b.append_block_param(frees, types::I32);

    // Pointers: every input and output, the struct and its fields.
    let mut checked: Vec<Value> =
        struct_ptr.into_iter().chain(inputs.iter().copied()).chain(outputs.iter().copied()).collect();
    // The struct is checked before its fields are loaded.
    if let Some(s) = struct_ptr {
        check(&mut b, returns, s, status::NULL_ARGUMENT);
    }
    let mut param_ptrs = Vec::new();
    for (k, p) in lib.params.iter().enumerate() {
        param_ptrs.push(match (&params[k], struct_ptr) {
            (Some(_), _) => None,
            (None, Some(s)) => {
                let v = b.ins().load(pointer, MemFlagsData::trusted(), s, (k * pointer.bytes() as usize) as i32);
                Some(v)
            }
            (None, None) => return Err(fail(format!("parameter `{}` has no value", p.name))),
        });
    }
    checked.extend(param_ptrs.iter().flatten().copied());
    for &p in &checked {
        check(&mut b, returns, p, status::NULL_ARGUMENT);
    }
    for (s, &v) in e.sizes.iter().zip(&sizes) {
        let cc = if s.up_to { IntCC::UnsignedGreaterThan } else { IntCC::NotEqual };
        let bad = b.ins().icmp_imm_s(cc, v, s.compiled as i64);
        branch_to(&mut b, bad, returns, status::BAD_SIZE);
    }

    // The plan's sizes are constants (the export's, `Export::plan`).
    let layout = arena_layout(&e.plan, &Bindings::new()).map_err(fail)?;
    let bytes = layout.bytes.div_ceil(64).max(1) * 64;
    let align = b.ins().iconst(pointer, 64);
    let size = b.ins().iconst(pointer, bytes as i64);
    let call = b.ins().call(refs.alloc, &[align, size]);
    let arena = b.inst_results(call)[0];
    check(&mut b, returns, arena, status::OUT_OF_MEMORY);

    let count = e.plan.buffers.len() as u32;
    let slot = b.create_sized_stack_slot(StackSlotData::new(StackSlotKind::ExplicitSlot, count.max(1) * 8, 3));
    for (index, decl) in e.plan.buffers.iter().enumerate() {
        let address = match &decl.role {
            BufferRole::Param(name) => {
                let k = lib
                    .params
                    .iter()
                    .position(|p| &p.name == name)
                    .ok_or_else(|| fail(format!("no parameter `{name}`")))?;
                match (params[k], param_ptrs[k]) {
                    (Some(data), _) => {
                        let gv = module.declare_data_in_func(data, b.func);
                        b.ins().symbol_value(pointer, gv)
                    }
                    (None, Some(v)) => v,
                    (None, None) => return Err(fail(format!("parameter `{name}` has no value"))),
                }
            }
            _ => b.ins().iadd_imm_s(arena, layout.offsets[index] as i64),
        };
        b.ins().stack_store(pointer, address, slot, (index * 8) as i32);
    }
    for (arg, &src) in e.inputs.iter().zip(&inputs) {
        let dst = b.ins().iadd_imm_s(arena, layout.offsets[arg.buffer as usize] as i64);
        let (given, total) = extent(&mut b, e, arg, &sizes);
        b.ins().call(refs.memcpy, &[dst, src, given]);
        if let Some(total) = total {
            let tail = b.ins().iadd(dst, given);
            let rest = b.ins().isub(total, given);
            let zero = b.ins().iconst(types::I32, 0);
            b.ins().call(refs.memset, &[tail, zero, rest]);
        }
    }
    let table = b.ins().stack_addr(pointer, slot, 0);
    for kernel in &kernels {
        let callee = module.declare_func_in_func(kernel.0, b.func);
        let lo = b.ins().iconst(types::I64, 0);
        let hi = b.ins().iconst(types::I64, kernel.1 as i64);
        let no_sizes = b.ins().iconst(pointer, 0);
        let call = b.ins().call(callee, &[table, no_sizes, lo, hi]);
        let s = b.inst_results(call)[0];
        let next = b.create_block();
        let code = b.ins().iadd_imm_s(s, status::INDEX_OUT_OF_RANGE - 1);
        b.ins().brif(s, frees, &[code.into()], next, &[]);
        b.seal_block(next);
        b.switch_to_block(next);
    }
    for (arg, &dst) in e.outputs.iter().zip(&outputs) {
        let src = b.ins().iadd_imm_s(arena, layout.offsets[arg.buffer as usize] as i64);
        let (given, _) = extent(&mut b, e, arg, &sizes);
        b.ins().call(refs.memcpy, &[dst, src, given]);
    }
    let ok = b.ins().iconst(types::I32, status::OK);
    b.ins().jump(frees, &[ok.into()]);

    b.switch_to_block(frees);
    b.seal_block(frees);
    let code = b.block_params(frees)[0];
    b.ins().call(refs.free, &[arena]);
    b.ins().jump(returns, &[code.into()]);

    b.switch_to_block(returns);
    b.seal_block(returns);
    let code = b.block_params(returns)[0];
    b.ins().return_(&[code]);
    b.finalize(module.target_config());
    module.define_function(id, &mut ctx).map_err(|e| fail(format!("{e:?}")))?;
    module.clear_context(&mut ctx);
    Ok(())
}

struct Imports {
    memcpy: FuncRef,
    memset: FuncRef,
    alloc: FuncRef,
    free: FuncRef,
}

/// Compiles the plan's kernels as local functions; returns each one's id
/// and the `hi` it is called with (`kernel::split_extent`, else 0).
fn define_kernels(module: &mut ObjectModule, lib: &Library, e: &Export) -> Result<Vec<(FuncId, u64)>, CodegenError> {
    let pointer = module.target_config().pointer_type();
    let mut ids = Vec::new();
    for (k, kern) in e.plan.kernels.iter().enumerate() {
        let mut ctx = module.make_context();
        let mut sig = module.make_signature();
        sig.params.push(AbiParam::new(pointer));
        sig.params.push(AbiParam::new(pointer));
        sig.params.push(AbiParam::new(types::I64));
        sig.params.push(AbiParam::new(types::I64));
        sig.returns.push(AbiParam::new(types::I32));
        ctx.func.signature = sig.clone();
        let name = format!("{}_{}_kernel_{k}", lib.name, e.function);
        let id = module.declare_function(&name, Linkage::Local, &sig).map_err(fail)?;
        kernel::build(module, &mut ctx.func, &e.plan, kern)
            .map_err(|message| CodegenError::Kernel { kernel: kern.name.clone(), message })?;
        module.define_function(id, &mut ctx).map_err(|e| fail(format!("{e:?}")))?;
        module.clear_context(&mut ctx);
        let hi = kernel::split_extent(kern).and_then(|s| s.as_const()).unwrap_or(0).max(0) as u64;
        ids.push((id, hi));
    }
    Ok(ids)
}

/// Bytes of `arg` the caller gives (rows up to the size asked for when its
/// leading axis is an `up_to` size), and the whole buffer's bytes when that
/// can be more.
fn extent(b: &mut FunctionBuilder, e: &Export, arg: &Arg, sizes: &[Value]) -> (Value, Option<Value>) {
    let element = arg.dtype.size_bytes() as i64;
    let compiled: i64 = arg
        .dims
        .iter()
        .map(|d| match d {
            ArgDim::Const(c) => *c as i64,
            ArgDim::Size(s) => e.sizes.iter().find(|z| &z.name == s).map_or(0, |z| z.compiled as i64),
        })
        .product();
    let total = compiled * element;
    if let Some(ArgDim::Size(name)) = arg.dims.first()
        && let Some(k) = e.sizes.iter().position(|s| &s.name == name && s.up_to)
        && let Some(&rows) = sizes.get(k)
    {
        let row_bytes = total / (e.sizes[k].compiled.max(1) as i64);
        let given = b.ins().imul_imm_s(rows, row_bytes);
        let whole = b.ins().iconst(types::I64, total);
        return (given, Some(whole));
    }
    (b.ins().iconst(types::I64, total), None)
}

/// Returns `code` through `to` when `value` is zero.
fn check(b: &mut FunctionBuilder, to: Block, value: Value, code: i64) {
    let zero = b.ins().icmp_imm_s(IntCC::Equal, value, 0);
    branch_to(b, zero, to, code);
}

/// Returns `code` through `to` when `condition` holds, else goes on.
fn branch_to(b: &mut FunctionBuilder, condition: Value, to: Block, code: i64) {
    let next = b.create_block();
    let code = b.ins().iconst(types::I32, code);
    b.ins().brif(condition, to, &[code.into()], next, &[]);
    b.seal_block(next);
    b.switch_to_block(next);
}
