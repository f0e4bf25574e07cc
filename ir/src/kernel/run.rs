//! A reference executor for kernel IR: runs a verified plan statement by
//! statement on plain vectors. It gives kernel IR its meaning, so lowering
//! can be tested against the graph interpreter before any backend exists,
//! and backends can be tested kernel by kernel.
//!
//! Values follow the graph interpreter's conventions: floats are computed in
//! f64 and f32 results rounded to f32 when stored (and when an accumulator is
//! read), integers are i64 and i32 results wrap when stored. A computed index
//! outside its bound is an error, never an out-of-bounds access.

use std::collections::BTreeMap;

use super::{AccId, Affine, BufferId, KExpr, KStmt, Plan, RuntimeCall, Size, VarId};
use crate::op::{BinaryOp, CompareOp, Literal, ReduceKind, UnaryOp};
use crate::random;
use crate::scalar;
use crate::types::Bindings;
use crate::types::DType;

/// The contents of one buffer.
#[derive(Clone, Debug, PartialEq)]
pub enum Storage {
    Float(Vec<f64>),
    Int(Vec<i64>),
    Bool(Vec<bool>),
}

impl Storage {
    /// A zero-filled buffer of `len` elements of `dtype`.
    pub fn zeros(dtype: DType, len: usize) -> Storage {
        match dtype {
            DType::Bool => Storage::Bool(vec![false; len]),
            d if d.is_float() => Storage::Float(vec![0.0; len]),
            _ => Storage::Int(vec![0; len]),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Storage::Float(v) => v.len(),
            Storage::Int(v) => v.len(),
            Storage::Bool(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A scalar while it is computed.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Scalar {
    F(f64),
    I(i64),
    B(bool),
}

/// The value of a size of a plan specialized to constants.
fn k(s: &Size) -> i64 {
    s.constant_term()
}

/// `plan` at `bindings`, every size a constant, or why not.
fn specialized(plan: &Plan, bindings: &Bindings) -> Result<Plan, String> {
    plan.check_bindings(bindings)?;
    let plan = plan.specialize(bindings);
    let mut symbolic = plan.buffers.iter().find(|b| b.len.as_const().is_none()).map(|b| b.len.clone());
    for kernel in &plan.kernels {
        for s in &kernel.body {
            s.clone().for_each_size_mut(&mut |size| {
                if size.as_const().is_none() {
                    symbolic = Some(size.clone());
                }
            });
        }
    }
    match symbolic {
        Some(size) => Err(format!("size {size} has no value at these sizes")),
        None => Ok(plan),
    }
}

/// Runs every kernel of `plan` in order at `bindings` (a value for each of
/// its size symbols) on `buffers` (one per declared buffer, inputs and
/// parameters filled in by the caller).
pub fn run_plan(plan: &Plan, bindings: &Bindings, buffers: &mut [Storage]) -> Result<(), String> {
    let plan = &specialized(plan, bindings)?;
    run_specialized(plan, buffers)
}

/// [`run_plan`] for a plan whose sizes are all constants.
fn run_specialized(plan: &Plan, buffers: &mut [Storage]) -> Result<(), String> {
    if buffers.len() != plan.buffers.len() {
        return Err(format!("the plan declares {} buffers, {} were given", plan.buffers.len(), buffers.len()));
    }
    for (i, (decl, storage)) in plan.buffers.iter().zip(buffers.iter()).enumerate() {
        if storage.len() as i64 != k(&decl.len)
            || std::mem::discriminant(storage) != std::mem::discriminant(&Storage::zeros(decl.dtype, 0))
        {
            return Err(format!("buffer b{i} must hold {} {} elements", decl.len, decl.dtype));
        }
    }
    for kernel in &plan.kernels {
        let mut machine = Machine { plan, buffers, vars: BTreeMap::new(), accs: BTreeMap::new() };
        machine.block(&kernel.body).map_err(|e| format!("kernel `{}`: {e}", kernel.name))?;
    }
    Ok(())
}

struct Machine<'a> {
    plan: &'a Plan,
    buffers: &'a mut [Storage],
    vars: BTreeMap<VarId, i64>,
    accs: BTreeMap<AccId, (DType, ReduceKind, Scalar)>,
}

type Run<T> = Result<T, String>;

impl Machine<'_> {
    fn block(&mut self, body: &[KStmt]) -> Run<()> {
        body.iter().try_for_each(|s| self.stmt(s))
    }

    fn stmt(&mut self, s: &KStmt) -> Run<()> {
        match s {
            KStmt::For { var, extent, body, .. } => {
                for i in 0..k(extent) {
                    self.vars.insert(*var, i);
                    self.block(body)?;
                }
                self.vars.remove(var);
                Ok(())
            }
            KStmt::Store { buffer, index, value } => {
                let at = self.affine(index);
                let v = self.expr(value)?;
                self.store(*buffer, at, v, false)
            }
            KStmt::ScatterAdd { buffer, base, index, stride, bound, value } => {
                let at = self.indirect(base, index, k(stride), k(bound))?;
                let v = self.expr(value)?;
                self.store(*buffer, at, v, true)
            }
            KStmt::AccInit { acc, dtype, kind } => {
                let identity = match (kind, dtype.is_float()) {
                    (ReduceKind::Sum, true) => Scalar::F(0.0),
                    (ReduceKind::Sum, false) => Scalar::I(0),
                    (ReduceKind::Max, true) => Scalar::F(f64::NEG_INFINITY),
                    (ReduceKind::Max, false) => Scalar::I(i64::MIN),
                };
                self.accs.insert(*acc, (*dtype, *kind, identity));
                Ok(())
            }
            KStmt::AccUpdate { acc, value } => {
                let v = self.expr(value)?;
                let (dtype, kind, old) = *self.accs.get(acc).ok_or_else(|| format!("{acc} is not declared"))?;
                let new = match (kind, old, v) {
                    (ReduceKind::Sum, Scalar::F(a), Scalar::F(b)) => Scalar::F(a + b),
                    (ReduceKind::Sum, Scalar::I(a), Scalar::I(b)) => Scalar::I(a.wrapping_add(b)),
                    (ReduceKind::Max, Scalar::F(a), Scalar::F(b)) => Scalar::F(scalar::nan_or(a, b, a.max(b))),
                    (ReduceKind::Max, Scalar::I(a), Scalar::I(b)) => Scalar::I(a.max(b)),
                    _ => return Err(format!("{acc}: mismatched accumulator update")),
                };
                self.accs.insert(*acc, (dtype, kind, new));
                Ok(())
            }
            KStmt::Call(RuntimeCall::Gemm { batch, m, n, k: depth, a, b, c }) => {
                let dtype = self.plan.buffer(c.buffer).map_or(DType::F32, |d| d.dtype);
                let at = |mat: &super::MatrixRef, j: i64, row: i64, col: i64| {
                    let (offset, batch_stride) = (k(&mat.offset), k(&mat.batch_stride));
                    offset + j * batch_stride + row * k(&mat.row_stride) + col * k(&mat.col_stride)
                };
                for j in 0..k(batch) {
                    for row in 0..k(m) {
                        for col in 0..k(n) {
                            let mut sum = 0.0;
                            for l in 0..k(depth) {
                                let x = self.float_at(a.buffer, at(a, j, row, l))?;
                                let y = self.float_at(b.buffer, at(b, j, l, col))?;
                                sum += x * y;
                            }
                            self.store(c.buffer, at(c, j, row, col), Scalar::F(round(sum, dtype)), false)?;
                        }
                    }
                }
                Ok(())
            }
        }
    }

    fn affine(&self, a: &Affine) -> i64 {
        a.terms.iter().fold(k(&a.constant), |acc, (v, c)| acc + k(c) * self.vars.get(v).copied().unwrap_or(0))
    }

    fn indirect(&mut self, base: &Affine, index: &KExpr, stride: i64, bound: i64) -> Run<i64> {
        let i = match self.expr(index)? {
            Scalar::I(i) => i,
            other => return Err(format!("an index must be an integer, got {other:?}")),
        };
        if i < 0 || i >= bound {
            return Err(format!("index {i} is out of range 0..{bound}"));
        }
        Ok(self.affine(base) + stride * i)
    }

    fn float_at(&self, buffer: BufferId, at: i64) -> Run<f64> {
        match self.buffers.get(buffer.0 as usize) {
            Some(Storage::Float(v)) => {
                v.get(at as usize).copied().ok_or_else(|| format!("{buffer}[{at}] is out of bounds"))
            }
            _ => Err(format!("{buffer} is not a float buffer")),
        }
    }

    fn store(&mut self, buffer: BufferId, at: i64, value: Scalar, add: bool) -> Run<()> {
        let dtype = self.plan.buffer(buffer).ok_or_else(|| format!("{buffer} is not declared"))?.dtype;
        let slot = usize::try_from(at).map_err(|_| format!("{buffer}[{at}] is out of bounds"))?;
        let storage = self.buffers.get_mut(buffer.0 as usize).ok_or_else(|| format!("{buffer} is missing"))?;
        let oob = || format!("{buffer}[{at}] is out of bounds");
        match (storage, value) {
            (Storage::Float(v), Scalar::F(x)) => {
                let cell = v.get_mut(slot).ok_or_else(oob)?;
                *cell = round(if add { *cell + x } else { x }, dtype);
            }
            (Storage::Int(v), Scalar::I(x)) => {
                let cell = v.get_mut(slot).ok_or_else(oob)?;
                let sum = if add { cell.wrapping_add(x) } else { x };
                *cell = if dtype == DType::I32 { sum as i32 as i64 } else { sum };
            }
            (Storage::Bool(v), Scalar::B(x)) => *v.get_mut(slot).ok_or_else(oob)? = x,
            _ => return Err(format!("a value of the wrong kind stored into {buffer}")),
        }
        Ok(())
    }

    fn load(&self, buffer: BufferId, at: i64) -> Run<Scalar> {
        let slot = usize::try_from(at).map_err(|_| format!("{buffer}[{at}] is out of bounds"))?;
        let oob = || format!("{buffer}[{at}] is out of bounds");
        Ok(match self.buffers.get(buffer.0 as usize).ok_or_else(|| format!("{buffer} is missing"))? {
            Storage::Float(v) => Scalar::F(*v.get(slot).ok_or_else(oob)?),
            Storage::Int(v) => Scalar::I(*v.get(slot).ok_or_else(oob)?),
            Storage::Bool(v) => Scalar::B(*v.get(slot).ok_or_else(oob)?),
        })
    }

    fn expr(&mut self, e: &KExpr) -> Run<Scalar> {
        Ok(match e {
            KExpr::Const { value, dtype } => match *value {
                Literal::Float(x) => Scalar::F(round(x.get(), *dtype)),
                Literal::Int(i) => Scalar::I(i),
                Literal::Bool(b) => Scalar::B(b),
            },
            KExpr::Index { index, dtype } => {
                let i = self.affine(index);
                if dtype.is_float() { Scalar::F(i as f64) } else { Scalar::I(i) }
            }
            KExpr::Load { buffer, index } => self.load(*buffer, self.affine(index))?,
            KExpr::Gather { buffer, base, index, stride, bound } => {
                let at = self.indirect(base, index, k(stride), k(bound))?;
                self.load(*buffer, at)?
            }
            KExpr::Acc(acc) => {
                let (dtype, _, v) = *self.accs.get(acc).ok_or_else(|| format!("{acc} is not declared"))?;
                match v {
                    Scalar::F(x) => Scalar::F(round(x, dtype)),
                    other => other,
                }
            }
            KExpr::Unary(op, x) => unary(*op, self.expr(x)?),
            KExpr::Binary(op, a, b) => binary(*op, self.expr(a)?, self.expr(b)?)?,
            KExpr::Compare(op, a, b) => compare(*op, self.expr(a)?, self.expr(b)?),
            KExpr::Select(c, a, b) => {
                let pick = matches!(self.expr(c)?, Scalar::B(true));
                let (x, y) = (self.expr(a)?, self.expr(b)?);
                if pick { x } else { y }
            }
            KExpr::Cast(to, x) => cast(self.expr(x)?, *to),
            KExpr::RandomBits { key, stream, counter, dtype } => {
                let key = match self.expr(key)? {
                    Scalar::I(k) => k as u64,
                    _ => 0,
                };
                let counter = self.affine(counter) as u64;
                Scalar::I(if *dtype == DType::I32 {
                    i64::from(random::bits31(key, *stream, counter))
                } else {
                    (random::bits(key, *stream, counter) >> 1) as i64
                })
            }
        })
    }
}

fn round(x: f64, dtype: DType) -> f64 {
    if dtype == DType::F32 { x as f32 as f64 } else { x }
}

fn unary(op: UnaryOp, x: Scalar) -> Scalar {
    match x {
        Scalar::F(v) => Scalar::F(scalar::unary_float(op, v)),
        Scalar::I(v) => Scalar::I(scalar::unary_int(op, v)),
        Scalar::B(b) => Scalar::B(!b),
    }
}

fn binary(op: BinaryOp, a: Scalar, b: Scalar) -> Run<Scalar> {
    Ok(match (a, b) {
        (Scalar::F(p), Scalar::F(q)) => Scalar::F(scalar::binary_float(op, p, q)),
        (Scalar::I(p), Scalar::I(q)) => Scalar::I(scalar::binary_int(op, p, q).ok_or("integer division by zero")?),
        (Scalar::B(p), Scalar::B(q)) => Scalar::B(scalar::binary_bool(op, p, q)),
        _ => return Err(format!("{op:?} of mismatched operands")),
    })
}

fn compare(op: CompareOp, a: Scalar, b: Scalar) -> Scalar {
    Scalar::B(match (a, b) {
        (Scalar::F(p), Scalar::F(q)) => scalar::compare(op, p, q),
        (Scalar::I(p), Scalar::I(q)) => scalar::compare(op, p, q),
        (Scalar::B(p), Scalar::B(q)) => scalar::compare(op, p, q),
        _ => false,
    })
}

fn cast(x: Scalar, to: DType) -> Scalar {
    match (x, to) {
        (Scalar::F(v), DType::Bool) => Scalar::B(v != 0.0),
        (Scalar::I(v), DType::Bool) => Scalar::B(v != 0),
        (Scalar::B(v), DType::Bool) => Scalar::B(v),
        (Scalar::F(v), t) if t.is_float() => Scalar::F(round(v, t)),
        (Scalar::F(v), DType::I32) => Scalar::I(v as i32 as i64),
        (Scalar::F(v), _) => Scalar::I(v as i64),
        (Scalar::I(v), t) if t.is_float() => Scalar::F(round(v as f64, t)),
        (Scalar::I(v), DType::I32) => Scalar::I(v as i32 as i64),
        (Scalar::I(v), _) => Scalar::I(v),
        (Scalar::B(v), t) if t.is_float() => Scalar::F(f64::from(u8::from(v))),
        (Scalar::B(v), _) => Scalar::I(i64::from(v)),
    }
}

/// Runs `plan` as a function at `bindings`: fills its input and parameter
/// buffers from `inputs` and `params`, runs it, and returns its output
/// buffers in order.
pub fn execute(
    plan: &Plan,
    bindings: &Bindings,
    inputs: &[crate::interp::Tensor],
    params: &crate::interp::Params,
) -> Result<Vec<Storage>, String> {
    execute_with(plan, bindings, inputs, params, run_specialized)
}

/// [`execute`] with another runner of the filled buffers (a backend's
/// emulation, say) in place of [`run_plan`]; it is given the plan
/// specialized to `bindings`, every size a constant.
pub fn execute_with(
    plan: &Plan,
    bindings: &Bindings,
    inputs: &[crate::interp::Tensor],
    params: &crate::interp::Params,
    run: impl FnOnce(&Plan, &mut [Storage]) -> Result<(), String>,
) -> Result<Vec<Storage>, String> {
    use crate::interp::Data;
    let plan = &specialized(plan, bindings)?;
    let mut buffers: Vec<Storage> =
        plan.buffers.iter().map(|b| Storage::zeros(b.dtype, k(&b.len).max(0) as usize)).collect();
    for (slot, decl) in buffers.iter_mut().zip(&plan.buffers) {
        let source = match &decl.role {
            super::BufferRole::Input(n) => inputs.get(*n as usize).ok_or_else(|| format!("input {n} is missing"))?,
            super::BufferRole::Param(name) => {
                params.get(name).ok_or_else(|| format!("parameter `{name}` has no value"))?
            }
            _ => continue,
        };
        *slot = match &source.data {
            Data::Float(a) => Storage::Float(a.iter().copied().collect()),
            Data::Int(a) => Storage::Int(a.iter().copied().collect()),
            Data::Bool(a) => Storage::Bool(a.iter().copied().collect()),
        };
    }
    run(plan, &mut buffers)?;
    let mut outputs: Vec<(u32, Storage)> = plan
        .buffers
        .iter()
        .zip(buffers)
        .filter_map(|(d, s)| if let super::BufferRole::Output(n) = d.role { Some((n, s)) } else { None })
        .collect();
    outputs.sort_by_key(|o| o.0);
    Ok(outputs.into_iter().map(|o| o.1).collect())
}
