//! One exported function: its kernels, compiled as for the JIT, and a C
//! entry point that runs them.
//!
//! The entry point takes, in order: the parameter struct (when the library
//! does not bake its parameters), one pointer per input, one `int64_t` per
//! size, one pointer per output; it returns a status (`super::status`).
//! It checks every pointer and size (from 1 to the built maximum) before
//! touching memory, lays out the plan's arena for the sizes of the call
//! (each buffer above every buffer live at the same time placed before
//! it, biggest first, 64-byte aligned), allocates it with
//! `aligned_alloc(64, ...)`, copies the inputs in, runs the kernels (the
//! plan is symbolic: they read the sizes from an array), copies the outputs
//! out and frees the arena.

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{
    AbiParam, Block, FuncRef, InstBuilder, MemFlagsData, Signature, StackSlotData, StackSlotKind, Value, types,
};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_module::{DataId, FuncId, Linkage, Module};
use cranelift_object::ObjectModule;
use kiln_ir::kernel::{BufferRole, Size, hints, live_spans};
use kiln_ir::{Bindings, Symbol};

use super::{Export, Library, status};
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
    // Each size from 1 to the maximum: `v - 1` as unsigned is at most `max - 1`.
    for (s, &v) in e.sizes.iter().zip(&sizes) {
        let below = b.ins().iadd_imm_s(v, -1);
        let bad = b.ins().icmp_imm_u(IntCC::UnsignedGreaterThan, below, s.compiled.saturating_sub(1) as i64);
        branch_to(&mut b, bad, returns, status::BAD_SIZE);
    }
    // The plan's sizes, in its order, for the kernels.
    let mut symbols: Vec<(Symbol, Value)> = Vec::new();
    for sym in &e.plan.symbols {
        let k =
            e.sizes.iter().position(|s| s.name == sym.symbol.as_str()).ok_or_else(|| {
                fail(format!("size {} of the plan is not an argument of `{}`", sym.symbol, e.function))
            })?;
        symbols.push((sym.symbol.clone(), sizes[k]));
    }
    let size_slot = b.create_sized_stack_slot(StackSlotData::new(
        StackSlotKind::ExplicitSlot,
        (symbols.len().max(1) * 8) as u32,
        3,
    ));
    for (k, (_, v)) in symbols.iter().enumerate() {
        b.ins().stack_store(types::I64, *v, size_slot, (k * 8) as i32);
    }

    // The arena at these sizes: each buffer but the parameters, biggest
    // (at the maximum sizes) first, above every buffer placed before it
    // whose lifetime overlaps its own.
    let maximum: Bindings = e.sizes.iter().map(|s| (Symbol::new(s.name.clone()), s.compiled)).collect();
    let maximum = if maximum.is_empty() { hints(&e.plan.symbols) } else { maximum };
    let spans = live_spans(&e.plan);
    let bytes_of = |b: &mut FunctionBuilder, index: usize| {
        let decl = &e.plan.buffers[index];
        let len = size_value(b, &decl.len, &symbols);
        b.ins().imul_imm_s(len, decl.dtype.size_bytes() as i64)
    };
    let mut order: Vec<usize> =
        (0..e.plan.buffers.len()).filter(|&i| !matches!(e.plan.buffers[i].role, BufferRole::Param(_))).collect();
    let at_maximum = |i: usize| {
        let d = &e.plan.buffers[i];
        d.len.eval(&maximum).unwrap_or(0).saturating_mul(d.dtype.size_bytes() as i64)
    };
    order.sort_by_key(|&i| (std::cmp::Reverse(at_maximum(i)), i));
    let mut placed: Vec<(usize, Value)> = Vec::new();
    let mut offsets: Vec<Option<Value>> = vec![None; e.plan.buffers.len()];
    let mut total = b.ins().iconst(types::I64, 64);
    for &i in &order {
        let bytes = bytes_of(&mut b, i);
        let rounded = b.ins().iadd_imm_s(bytes, 63);
        let rounded = b.ins().band_imm_s(rounded, !63);
        let sixty_four = b.ins().iconst(types::I64, 64);
        let slot_bytes = b.ins().umax(rounded, sixty_four);
        let mut offset = b.ins().iconst(types::I64, 0);
        for &(q, end) in &placed {
            if spans[q].0 <= spans[i].1 && spans[i].0 <= spans[q].1 {
                offset = b.ins().umax(offset, end);
            }
        }
        let end = b.ins().iadd(offset, slot_bytes);
        total = b.ins().umax(total, end);
        placed.push((i, end));
        offsets[i] = Some(offset);
    }
    let align = b.ins().iconst(pointer, 64);
    let call = b.ins().call(refs.alloc, &[align, total]);
    let arena = b.inst_results(call)[0];
    check(&mut b, returns, arena, status::OUT_OF_MEMORY);

    let count = e.plan.buffers.len() as u32;
    let slot = b.create_sized_stack_slot(StackSlotData::new(StackSlotKind::ExplicitSlot, count.max(1) * 8, 3));
    let mut addresses = Vec::with_capacity(e.plan.buffers.len());
    for (index, decl) in e.plan.buffers.iter().enumerate() {
        let address = match (&decl.role, offsets[index]) {
            (BufferRole::Param(name), _) => {
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
            (_, Some(offset)) => b.ins().iadd(arena, offset),
            (_, None) => return Err(fail(format!("buffer b{index} has no place in the arena"))),
        };
        b.ins().stack_store(pointer, address, slot, (index * 8) as i32);
        addresses.push(address);
    }
    for (arg, &src) in e.inputs.iter().zip(&inputs) {
        let Some(&dst) = addresses.get(arg.buffer as usize) else { continue };
        let given = bytes_of(&mut b, arg.buffer as usize);
        b.ins().call(refs.memcpy, &[dst, src, given]);
    }
    let table = b.ins().stack_addr(pointer, slot, 0);
    let size_table = b.ins().stack_addr(pointer, size_slot, 0);
    for (id, split) in &kernels {
        let callee = module.declare_func_in_func(*id, b.func);
        let lo = b.ins().iconst(types::I64, 0);
        let hi = match split {
            Some(extent) => size_value(&mut b, extent, &symbols),
            None => b.ins().iconst(types::I64, 0),
        };
        let call = b.ins().call(callee, &[table, size_table, lo, hi]);
        let s = b.inst_results(call)[0];
        let next = b.create_block();
        let code = b.ins().iadd_imm_s(s, status::INDEX_OUT_OF_RANGE - 1);
        b.ins().brif(s, frees, &[code.into()], next, &[]);
        b.seal_block(next);
        b.switch_to_block(next);
    }
    for (arg, &dst) in e.outputs.iter().zip(&outputs) {
        let Some(&src) = addresses.get(arg.buffer as usize) else {
            return Err(fail(format!("output `{}` has no buffer", arg.name)));
        };
        let given = bytes_of(&mut b, arg.buffer as usize);
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
    alloc: FuncRef,
    free: FuncRef,
}

/// Compiles the plan's kernels as local functions; returns each one's id
/// and the size of the `hi` it is called with (`kernel::split_extent`,
/// else 0).
fn define_kernels(
    module: &mut ObjectModule,
    lib: &Library,
    e: &Export,
) -> Result<Vec<(FuncId, Option<Size>)>, CodegenError> {
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
        ids.push((id, kernel::split_extent(kern)));
    }
    Ok(ids)
}

/// The value of `size` from the values of the plan's size symbols.
fn size_value(b: &mut FunctionBuilder, size: &Size, symbols: &[(Symbol, Value)]) -> Value {
    let mut sum = b.ins().iconst(types::I64, size.constant_term());
    for (monomial, coefficient) in size.terms() {
        let mut product = b.ins().iconst(types::I64, *coefficient);
        for s in monomial {
            // Every symbol of the plan is an argument (checked above).
            let value = symbols.iter().find(|(name, _)| name == s).map(|(_, v)| *v);
            let value = value.unwrap_or_else(|| b.ins().iconst(types::I64, 0));
            product = b.ins().imul(product, value);
        }
        sum = b.ins().iadd(sum, product);
    }
    sum
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
