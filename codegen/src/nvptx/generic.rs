//! PTX generic in a plan's symbolic dimensions: one module (and one
//! manifest) for every size of a residue class, instead of one per size.
//!
//! A plan is specialized to sizes: its extents, strides and buffer lengths
//! are numbers. To find which of them are functions of the symbols, the
//! function is lowered at five probe sizes per symbol congruent to the
//! requested one modulo [`MODULUS`] (the grid of them with several
//! symbols; every size-dependent choice taken at the requested sizes: see
//! `CompileOptions::decide_at`), each plan is built into LLVM IR, and
//! the modules are walked in lockstep. They must agree in everything but
//! numeric constants; a constant that differs between them is fitted by a
//! polynomial in the sizes ([`Formula::fit_grid`], checked on a fifth size
//! along each symbol) and replaced, in the first module, by that
//! polynomial computed from the entry's size arguments (floats as `q` or
//! `1 / q`, the two forms a size takes in a kernel: a mean's count, its
//! reciprocal). Buffer lengths and thread counts are fitted the same way
//! for the manifest.
//!
//! Guarantee: [`GenericPlan::new`] and [`GenericPlan::build_module`] either
//! give a module whose every entry computes, from its size arguments, the
//! numbers each probe's module has at its sizes, or [`PtxError::NotGeneric`]
//! saying what varies in a way no polynomial fits. The mapping of every
//! launch is correct at any size, and the one choice that depends on a
//! size's value — a thread running 4 consecutive iterations where 4
//! divides the loop's extent — depends on it only modulo 4, so the module
//! is valid for all sizes >= 1 congruent to the requested ones modulo
//! [`MODULUS`] (the emulation tests check two such sizes per function).

use super::k;
use std::collections::HashMap;

use inkwell::context::Context;
use inkwell::module::Module;
use inkwell::values::{BasicValue, BasicValueEnum, FunctionValue, InstructionOpcode, InstructionValue, IntValue};
use kiln_ir::DType;
use kiln_ir::kernel::{BufferId, BufferRole, Plan};

use super::PtxError;
use super::emit::{self, E, Flavor};
use super::formula::Formula;
use super::launch::{LANES, grid_for, launches};

/// Sizes a generic module is valid for are congruent modulo this: the
/// lanes a grid launch gives each thread ([`LANES`]) divide a loop's
/// extent or not alike for all of them.
pub const MODULUS: u64 = LANES as u64;

/// How many probe sizes [`probe_sizes`] gives: four determine a cubic,
/// the fifth checks it.
const PROBES: usize = 5;

/// The most symbols a generic plan has: the probes are a grid, five sizes
/// along each symbol.
pub const MAX_SYMBOLS: usize = 3;

/// The sizes to lower a function at for a generic module valid at `n`:
/// congruent to `n` modulo [`MODULUS`], and far enough above the
/// lowering's own thresholds (a loop of 4 or 16 iterations, a row of 32)
/// that they make the same choices at all of them.
pub fn probe_sizes(n: u64) -> Vec<u64> {
    let base = 1024 + n % MODULUS;
    (0..PROBES as u64).map(|k| base + MODULUS * k).collect()
}

/// Every point of the grid of probe sizes for the sizes `asked` (one per
/// symbol), the first symbol varying fastest: where to lower a function
/// for [`GenericPlan::new`].
pub fn probe_grid(asked: &[u64]) -> Vec<Vec<u64>> {
    let axes: Vec<Vec<u64>> = asked.iter().map(|n| probe_sizes(*n)).collect();
    let count = PROBES.pow(asked.len() as u32);
    (0..count).map(|flat| (0..asked.len()).map(|k| axes[k][flat / PROBES.pow(k as u32) % PROBES]).collect()).collect()
}

/// The index in [`probe_grid`]'s order of the point at `idx` (one index
/// per symbol).
fn flat(idx: &[usize]) -> usize {
    idx.iter().enumerate().map(|(k, i)| i * PROBES.pow(k as u32)).sum()
}

/// A buffer of a generic plan.
#[derive(Clone, Debug)]
pub struct GenericBuffer {
    pub role: BufferRole,
    pub dtype: DType,
    pub len: Formula,
}

/// A launch of a generic plan: the threads wanted as formulas.
#[derive(Clone, Debug)]
pub struct GenericLaunch {
    pub kernel: String,
    pub entry: String,
    pub threads: [Formula; 3],
    pub block: [u32; 3],
    pub shared_bytes: u32,
    pub grid_stride: bool,
    pub cooperates: bool,
    pub buffers: Vec<BufferId>,
}

impl GenericLaunch {
    /// The grid at sizes `ns` (one per symbol), as
    /// [`super::launch::Launch::grid`] computes it.
    pub fn grid(&self, ns: &[u64]) -> Result<[u64; 3], String> {
        let xs: Vec<i64> = ns.iter().map(|n| *n as i64).collect();
        let mut threads = [0u64; 3];
        for (k, f) in self.threads.iter().enumerate() {
            let v = f.eval(&xs).ok_or_else(|| format!("{}: no thread count at {ns:?}", self.entry))?;
            threads[k] = u64::try_from(v).map_err(|_| format!("{}: a negative thread count at {ns:?}", self.entry))?;
        }
        Ok(grid_for(self.grid_stride, threads, self.block))
    }
}

/// A plan lowered at several sizes of its symbol, with what varies between
/// them fitted as formulas.
#[derive(Clone, Debug)]
pub struct GenericPlan {
    pub name: String,
    /// The symbols, in the order of the entries' size arguments, and the
    /// sizes asked for; none for a plan without symbols (then everything
    /// is constant and there is one probe).
    pub symbols: Vec<(String, u64)>,
    pub buffers: Vec<GenericBuffer>,
    pub launches: Vec<GenericLaunch>,
    /// The probe sizes along each symbol.
    axes: Vec<Vec<i64>>,
    /// The plan at each point of the probe grid, in [`probe_grid`]'s order.
    probes: Vec<Plan>,
}

fn not_generic<T>(what: impl Into<String>) -> E<T> {
    Err(PtxError::NotGeneric(what.into()))
}

impl GenericPlan {
    /// A plan for one binding as a generic plan without symbols: every
    /// formula a constant, the module the plan's own.
    pub fn fixed(plan: &Plan) -> E<GenericPlan> {
        GenericPlan::new(Vec::new(), vec![plan.clone()])
    }

    /// The plan's kernels (a kernel may take several launches).
    pub fn kernels(&self) -> usize {
        self.probes[0].kernels.len()
    }

    /// `probes`: the plan lowered at each point [`probe_grid`] gives for
    /// the sizes asked for, in its order (one plan when there are no
    /// symbols).
    pub fn new(symbols: Vec<(String, u64)>, probes: Vec<Plan>) -> E<GenericPlan> {
        if symbols.len() > MAX_SYMBOLS {
            return not_generic(format!("it has {} symbolic dimensions, more than {MAX_SYMBOLS}", symbols.len()));
        }
        let asked: Vec<u64> = symbols.iter().map(|s| s.1).collect();
        let grid = probe_grid(&asked);
        if probes.len() != grid.len() {
            return not_generic(format!("{} plans for a grid of {} probe sizes", probes.len(), grid.len()));
        }
        let axes: Vec<Vec<i64>> = asked.iter().map(|n| probe_sizes(*n).iter().map(|p| *p as i64).collect()).collect();
        let first = (0, &probes[0]);
        let name = first.1.name.clone();
        let fit = |what: &str, value: &dyn Fn(&Plan) -> Option<u64>| -> E<Formula> {
            if probes.iter().any(|p| value(p).is_none()) {
                return not_generic(format!("{what} differs in structure between sizes"));
            }
            Formula::fit_grid(&axes, &|idx| value(&probes[flat(idx)]).map(|v| v as i64))
                .map_or_else(|| not_generic(format!("{what} is no polynomial of degree 3 or less in the sizes")), Ok)
        };
        let mut buffers = Vec::new();
        for (i, b) in first.1.buffers.iter().enumerate() {
            let same = |p: &Plan| {
                p.buffers.get(i).filter(|o| o.role == b.role && o.dtype == b.dtype).map(|o| k(&o.len) as u64)
            };
            let len = fit(&format!("the length of buffer b{i}"), &same)?;
            buffers.push(GenericBuffer { role: b.role.clone(), dtype: b.dtype, len });
        }
        if probes.iter().any(|p| p.buffers.len() != buffers.len() || p.kernels.len() != first.1.kernels.len()) {
            return not_generic("the plan has different buffers or kernels at different sizes");
        }
        let mut generic_launches = Vec::new();
        for (k, kernel) in first.1.kernels.iter().enumerate() {
            let per_probe: Vec<_> = probes.iter().map(|p| launches(p, &p.kernels[k])).collect();
            let count = per_probe[0].len();
            if per_probe.iter().any(|l| l.len() != count) {
                return not_generic(format!(
                    "kernel {} splits into different launches at different sizes",
                    kernel.name
                ));
            }
            for (j, l) in per_probe[0].iter().enumerate() {
                let alike = per_probe.iter().all(|ls| {
                    let o = &ls[j];
                    o.name == l.name
                        && o.block == l.block
                        && o.shared_bytes == l.shared_bytes
                        && o.grid_stride() == l.grid_stride()
                        && o.buffers() == l.buffers()
                });
                if !alike {
                    return not_generic(format!("launch {} is mapped differently at different sizes", l.name));
                }
                let mut threads = [Formula::constant(1), Formula::constant(1), Formula::constant(1)];
                for (axis, t) in threads.iter_mut().enumerate() {
                    let value = |p: &Plan| {
                        let ls = launches(p, &p.kernels[k]);
                        ls.get(j).map(|x| x.threads[axis])
                    };
                    *t = fit(&format!("the threads of launch {}", l.name), &value)?;
                }
                generic_launches.push(GenericLaunch {
                    kernel: kernel.name.clone(),
                    entry: l.name.clone(),
                    threads,
                    block: l.block,
                    shared_bytes: l.shared_bytes,
                    grid_stride: l.grid_stride(),
                    cooperates: l.cooperates(),
                    buffers: l.buffers(),
                });
            }
        }
        Ok(GenericPlan { name, symbols, buffers, launches: generic_launches, axes, probes })
    }

    /// Whether the module is valid at sizes `ns` (one per symbol): each
    /// congruent to the size asked for modulo [`MODULUS`], and at least 1.
    pub fn valid_at(&self, ns: &[u64]) -> bool {
        ns.len() == self.symbols.len()
            && ns.iter().zip(&self.symbols).all(|(n, (_, asked))| *n >= 1 && n % MODULUS == asked % MODULUS)
    }

    /// How many i64 symbol arguments each entry takes after the status word.
    pub fn symbol_arguments(&self) -> usize {
        self.symbols.len()
    }

    /// The symbols' names, in argument order.
    pub fn symbol_names(&self) -> Vec<&str> {
        self.symbols.iter().map(|s| s.0.as_str()).collect()
    }

    /// The module of every launch, generic in the symbol.
    pub fn build_module<'c>(&self, context: &'c Context, flavor: Flavor) -> E<Module<'c>> {
        let symbols = self.symbol_arguments();
        let mut modules = Vec::new();
        for plan in &self.probes {
            modules.push(emit::build_module(context, plan, flavor, symbols)?);
        }
        if modules.len() > 1 {
            let shapes: Vec<String> = modules.iter().map(|m| mask_numbers(&m.print_to_string().to_string())).collect();
            if shapes.iter().any(|s| *s != shapes[0]) {
                return not_generic("the LLVM IR differs in more than its numbers between sizes");
            }
            generalize(context, &modules, &self.axes)?;
        }
        let module = modules.swap_remove(0);
        module.verify().map_err(|e| PtxError::Llvm(e.to_string()))?;
        Ok(module)
    }
}

/// `text` with every number (a run of characters starting with a digit)
/// replaced by `#`: what must agree between the probes' modules.
fn mask_numbers(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            while chars.peek().is_some_and(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '+' || *c == '-') {
                chars.next();
            }
            out.push('#');
        } else {
            out.push(c);
        }
    }
    out
}

/// How a constant that varies with the size is computed from it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Varying {
    /// An integer of the given width: `q(N)`.
    Int(Formula),
    /// A float: `q(N)` converted.
    Float(Formula),
    /// A float: `1 / q(N)`.
    Reciprocal(Formula),
}

/// One operand to replace: instruction, operand index, what to compute.
type Edit<'c> = (InstructionValue<'c>, u32, Varying);

/// Rewrites `modules[0]` so that every constant operand that differs
/// between the modules is computed from the size argument of its function.
fn generalize<'c>(context: &'c Context, modules: &[Module<'c>], axes: &[Vec<i64>]) -> E<()> {
    let mut functions: Vec<Option<FunctionValue<'c>>> = modules.iter().map(|m| m.get_first_function()).collect();
    while let Some(base) = functions[0] {
        let others: Vec<FunctionValue<'c>> = functions[1..].iter().map(|f| f.expect("same functions")).collect();
        let edits = varying_operands(base, &others, axes)?;
        if !edits.is_empty() {
            apply(context, base, edits, axes.len())?;
        }
        for f in functions.iter_mut() {
            *f = f.and_then(|f| f.get_next_function());
        }
    }
    Ok(())
}

/// The instructions of `f`, in order.
fn instructions(f: FunctionValue<'_>) -> Vec<InstructionValue<'_>> {
    let mut all = Vec::new();
    for block in f.get_basic_blocks() {
        let mut at = block.get_first_instruction();
        while let Some(i) = at {
            all.push(i);
            at = i.get_next_instruction();
        }
    }
    all
}

fn varying_operands<'c>(base: FunctionValue<'c>, others: &[FunctionValue<'c>], axes: &[Vec<i64>]) -> E<Vec<Edit<'c>>> {
    let name = base.get_name().to_string_lossy().to_string();
    let code: Vec<Vec<InstructionValue<'c>>> =
        std::iter::once(base).chain(others.iter().copied()).map(instructions).collect();
    if code.iter().any(|c| c.len() != code[0].len()) {
        return not_generic(format!("{name} has different instructions at different sizes"));
    }
    let mut edits = Vec::new();
    for (at, instruction) in code[0].iter().enumerate() {
        for operand in 0..instruction.get_num_operands() {
            let values: Vec<Option<BasicValueEnum<'c>>> =
                code.iter().map(|c| c[at].get_operand(operand).and_then(|o| o.value())).collect();
            let Some(first) = values[0] else { continue };
            let varying = match first {
                BasicValueEnum::IntValue(v) if v.is_constant_int() => {
                    let ys: Vec<Option<i64>> = values
                        .iter()
                        .map(|v| v.and_then(|v| v.into_int_value().get_sign_extended_constant()))
                        .collect();
                    if ys.iter().all(|y| *y == ys[0]) {
                        continue;
                    }
                    match Formula::fit_grid(axes, &|idx| ys[flat(idx)]) {
                        Some(f) => Varying::Int(f),
                        None => {
                            let seen: Vec<String> =
                                ys.iter().take(8).map(|y| y.map_or("?".into(), |y| y.to_string())).collect();
                            return not_generic(format!(
                                "an integer in {name} varies with the sizes as no polynomial does ({}, ... at probe sizes {:?})",
                                seen.join(", "),
                                axes.iter().map(|a| a.as_slice()).collect::<Vec<_>>()
                            ));
                        }
                    }
                }
                BasicValueEnum::FloatValue(v) if v.is_const() => {
                    let ys: Vec<Option<f64>> = values
                        .iter()
                        .map(|v| v.and_then(|v| v.into_float_value().get_constant()).map(|c| c.0))
                        .collect();
                    let bits = |y: &Option<f64>| y.map(f64::to_bits);
                    if ys.iter().all(|y| bits(y) == bits(&ys[0])) {
                        continue;
                    }
                    let single = v.get_type() == v.get_type().get_context().f32_type();
                    match float_formula(&ys, axes, single) {
                        Some(varying) => varying,
                        None => {
                            let seen: Vec<String> =
                                ys.iter().take(8).map(|y| y.map_or("?".into(), |y| format!("{y:e}"))).collect();
                            return not_generic(format!(
                                "a float in {name} varies with the sizes as neither q(N) nor 1/q(N) ({}, ... at probe sizes {:?})",
                                seen.join(", "),
                                axes.iter().map(|a| a.as_slice()).collect::<Vec<_>>()
                            ));
                        }
                    }
                }
                _ => continue,
            };
            if instruction.get_opcode() == InstructionOpcode::Alloca
                || instruction.get_opcode() == InstructionOpcode::Phi
            {
                return not_generic(format!("{name}: a size in an {:?}", instruction.get_opcode()));
            }
            edits.push((*instruction, operand, varying));
        }
    }
    Ok(edits)
}

/// The form of floats `ys` taken on the probe grid of `axes`: `q(N)` or
/// `1/q(N)`, rounded to f32 when `single`, exactly as the probes'
/// constants are.
fn float_formula(ys: &[Option<f64>], axes: &[Vec<i64>], single: bool) -> Option<Varying> {
    let ys: Vec<f64> = ys.iter().copied().collect::<Option<Vec<f64>>>()?;
    let round = |v: f64| if single { f64::from(v as f32) } else { v };
    let integer = |v: f64| (v.fract() == 0.0 && v.abs() < 9e15).then_some(v as i64);
    if let Some(f) = Formula::fit_grid(axes, &|idx| integer(ys[flat(idx)])) {
        return Some(Varying::Float(f));
    }
    let inverses: Vec<f64> = ys.iter().map(|y| (1.0 / y).round()).collect();
    let f = Formula::fit_grid(axes, &|idx| integer(inverses[flat(idx)]))?;
    let exact = ys.iter().zip(&inverses).all(|(y, q)| {
        let q = round(*q);
        let r = if single { f64::from(1.0f32 / q as f32) } else { 1.0 / q };
        r == *y
    });
    exact.then_some(Varying::Reciprocal(f))
}

/// Computes each edit's value from `f`'s last `symbols` arguments (the
/// sizes) at the top of its entry block, after the allocas, and puts it in
/// its operand.
fn apply<'c>(context: &'c Context, f: FunctionValue<'c>, edits: Vec<Edit<'c>>, symbols: usize) -> E<()> {
    let name = f.get_name().to_string_lossy().to_string();
    let count = f.count_params() as usize;
    let sizes: Vec<IntValue<'c>> = (count.saturating_sub(symbols)..count)
        .filter_map(|k| match f.get_nth_param(k as u32) {
            Some(BasicValueEnum::IntValue(n)) if n.get_type().get_bit_width() == 64 => Some(n),
            _ => None,
        })
        .collect();
    if sizes.len() != symbols {
        return not_generic(format!("{name} varies with the sizes but has no size arguments"));
    }
    let Some(entry) = f.get_first_basic_block() else { return not_generic(format!("{name} has no body")) };
    let b = context.create_builder();
    let mut at = entry.get_first_instruction();
    while let Some(i) = at.filter(|i| i.get_opcode() == InstructionOpcode::Alloca) {
        at = i.get_next_instruction();
    }
    match at {
        Some(i) => b.position_before(&i),
        None => b.position_at_end(entry),
    }
    let i64t = context.i64_type();
    let mut computed: HashMap<(Varying, String), BasicValueEnum<'c>> = HashMap::new();
    for (instruction, operand, varying) in edits {
        let Some(old) = instruction.get_operand(operand).and_then(|o| o.value()) else { continue };
        let key = (varying.clone(), old.get_type().to_string());
        let value = match computed.get(&key) {
            Some(v) => *v,
            None => {
                let formula = |f: &Formula| -> E<IntValue<'c>> {
                    let mut acc = i64t.const_int(0, false);
                    for (exponents, c) in &f.terms {
                        let mut term = i64t.const_int(*c as u64, true);
                        for (k, power) in exponents.iter().enumerate() {
                            for _ in 0..*power {
                                term = b.build_int_mul(term, sizes[k], "")?;
                            }
                        }
                        acc = b.build_int_add(acc, term, "")?;
                    }
                    if f.denominator != 1 {
                        acc = b.build_int_exact_signed_div(acc, i64t.const_int(f.denominator as u64, true), "")?;
                    }
                    Ok(acc)
                };
                let v: BasicValueEnum<'c> = match &varying {
                    Varying::Int(f) => {
                        let ty = old.into_int_value().get_type();
                        let v = formula(f)?;
                        if ty.get_bit_width() == 64 { v.into() } else { b.build_int_truncate(v, ty, "")?.into() }
                    }
                    Varying::Float(f) => {
                        let ty = old.into_float_value().get_type();
                        b.build_signed_int_to_float(formula(f)?, ty, "")?.into()
                    }
                    Varying::Reciprocal(f) => {
                        let ty = old.into_float_value().get_type();
                        let q = b.build_signed_int_to_float(formula(f)?, ty, "")?;
                        b.build_float_div(ty.const_float(1.0), q, "")?.into()
                    }
                };
                computed.insert(key, v);
                v
            }
        };
        if !instruction.set_operand(operand, value.as_basic_value_enum()) {
            return not_generic(format!("{name}: an operand that cannot be replaced"));
        }
    }
    Ok(())
}
