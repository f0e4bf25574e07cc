//! Scalar expressions to Cranelift instructions, with the graph IR's
//! semantics: NaN-propagating max and min, wrapping integer arithmetic,
//! saturating float-to-integer casts, integer division by zero reported
//! through the status (the quotient is then 0), bools as bytes 0 and 1.
//! Where the host has FMA, a float `a * b + c` is one fused multiply-add
//! (rounded once, so within rounding of the interpreter's two steps).

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{InstBuilder, MemFlagsData, Value, types};
use kiln_ir::kernel::KExpr;
use kiln_ir::{BinaryOp, CompareOp, DType, Literal, UnaryOp};

use super::kernel::{Gen, KernelBuilder, machine_type};

impl KernelBuilder<'_, '_> {
    /// The dtype of an expression's value.
    fn type_of(&self, e: &KExpr) -> Gen<DType> {
        Ok(match e {
            KExpr::Const { dtype, .. } | KExpr::Index { dtype, .. } | KExpr::RandomBits { dtype, .. } => *dtype,
            KExpr::Cast(dtype, _) => *dtype,
            KExpr::Load { buffer, .. } | KExpr::Gather { buffer, .. } => self.dtype(*buffer)?,
            KExpr::Acc(_) => return Err("accumulator types come from their value".into()),
            KExpr::Unary(_, x) => self.type_of(x)?,
            KExpr::Binary(_, a, _) => self.type_of(a)?,
            KExpr::Compare(..) => DType::Bool,
            KExpr::Select(_, a, _) => self.type_of(a)?,
        })
    }

    /// The dtype of a value already computed.
    fn value_dtype(&self, v: Value) -> DType {
        match self.b.func.dfg.value_type(v) {
            types::F32 => DType::F32,
            types::F64 => DType::F64,
            types::I32 => DType::I32,
            types::I8 => DType::Bool,
            _ => DType::I64,
        }
    }

    pub fn expr(&mut self, e: &KExpr) -> Gen<Value> {
        match e {
            KExpr::Const { value, dtype } => Ok(self.constant(*value, *dtype)),
            KExpr::Index { index, dtype } => {
                let i = self.affine(index)?;
                Ok(self.convert(i, DType::I64, *dtype))
            }
            KExpr::Load { buffer, index } => {
                let dtype = self.dtype(*buffer)?;
                let address = self.address(*buffer, index)?;
                Ok(self.b.ins().load(machine_type(dtype), MemFlagsData::trusted(), address, 0))
            }
            KExpr::Gather { buffer, base, index, stride, bound } => {
                let dtype = self.dtype(*buffer)?;
                let at = self.checked_index(base, index, stride, bound)?;
                let address = self.element(*buffer, at)?;
                Ok(self.b.ins().load(machine_type(dtype), MemFlagsData::trusted(), address, 0))
            }
            KExpr::Acc(acc) => self.accumulator(*acc),
            KExpr::Unary(op, x) => {
                let v = self.expr(x)?;
                self.unary(*op, v)
            }
            KExpr::Binary(BinaryOp::Add, a, b) if self.fma && self.type_of(e).is_ok_and(|d| d.is_float()) => {
                match (&**a, &**b) {
                    (KExpr::Binary(BinaryOp::Mul, x, y), z) | (z, KExpr::Binary(BinaryOp::Mul, x, y)) => {
                        let (x, y, z) = (self.expr(x)?, self.expr(y)?, self.expr(z)?);
                        Ok(self.multiply_add(x, y, z))
                    }
                    _ => {
                        let (x, y) = (self.expr(a)?, self.expr(b)?);
                        self.binary(BinaryOp::Add, x, y)
                    }
                }
            }
            KExpr::Binary(op, a, b) => {
                let (x, y) = (self.expr(a)?, self.expr(b)?);
                self.binary(*op, x, y)
            }
            KExpr::Compare(op, a, b) => {
                let (x, y) = (self.expr(a)?, self.expr(b)?);
                Ok(self.compare(*op, x, y))
            }
            KExpr::Select(c, a, b) => {
                let (c, x, y) = (self.expr(c)?, self.expr(a)?, self.expr(b)?);
                Ok(self.b.ins().select(c, x, y))
            }
            KExpr::Cast(to, x) => {
                let from = match self.type_of(x) {
                    Ok(d) => d,
                    Err(_) => {
                        let v = self.expr(x)?;
                        let d = self.value_dtype(v);
                        return Ok(self.convert(v, d, *to));
                    }
                };
                let v = self.expr(x)?;
                Ok(self.convert(v, from, *to))
            }
            KExpr::RandomBits { key, stream, counter, dtype: DType::I32 } => {
                let counter = self.affine(counter)?;
                let counter = self.b.ins().ireduce(types::I32, counter);
                self.random_bits31(key, *stream, counter)
            }
            KExpr::RandomBits { key, stream, counter, dtype } => {
                let key = self.expr(key)?;
                let counter = self.affine(counter)?;
                let bits = self.random_bits(key, *stream, counter);
                let bits = self.b.ins().ushr_imm_u(bits, 1);
                Ok(self.convert(bits, DType::I64, *dtype))
            }
        }
    }

    fn constant(&mut self, value: Literal, dtype: DType) -> Value {
        match (value, dtype) {
            (Literal::Float(x), DType::F32) => self.b.ins().f32const(x.get() as f32),
            (Literal::Float(x), _) => self.b.ins().f64const(x.get()),
            (Literal::Int(i), DType::I32) => self.b.ins().iconst(types::I32, i64::from(i as i32)),
            (Literal::Int(i), _) => self.b.ins().iconst(types::I64, i),
            (Literal::Bool(b), _) => self.b.ins().iconst(types::I8, i64::from(b)),
        }
    }

    /// Converts a value between dtypes as the graph op `cast` does.
    fn convert(&mut self, v: Value, from: DType, to: DType) -> Value {
        match (from, to) {
            (f, t) if f == t => v,
            (DType::F32, DType::F64) => self.b.ins().fpromote(types::F64, v),
            (DType::F64, DType::F32) => self.b.ins().fdemote(types::F32, v),
            (f, DType::Bool) if f.is_float() => {
                let ty = machine_type(f);
                let (zero, _) = self.float_pair(ty, 0.0, 0.0);
                self.b.ins().fcmp(FloatCC::NotEqual, v, zero)
            }
            (_, DType::Bool) => self.b.ins().icmp_imm_s(IntCC::NotEqual, v, 0),
            (f, t) if f.is_float() => self.b.ins().fcvt_to_sint_sat(machine_type(t), v),
            (DType::Bool, t) if t.is_float() => self.b.ins().fcvt_from_uint(machine_type(t), v),
            (_, t) if t.is_float() => self.b.ins().fcvt_from_sint(machine_type(t), v),
            (DType::Bool, t) => self.b.ins().uextend(machine_type(t), v),
            (DType::I32, DType::I64) => self.b.ins().sextend(types::I64, v),
            (DType::I64, DType::I32) => self.b.ins().ireduce(types::I32, v),
            _ => v,
        }
    }

    fn float_call(&mut self, name: &str, args: &[Value]) -> Gen<Value> {
        let ty = self.b.func.dfg.value_type(args[0]);
        let suffix = if ty == types::F32 { "f32" } else { "f64" };
        let params = vec![ty; args.len()];
        self.call(&format!("kiln_{name}_{suffix}"), &params, &[ty], args)?
            .ok_or_else(|| format!("{name} returns a value"))
    }

    fn unary(&mut self, op: UnaryOp, v: Value) -> Gen<Value> {
        let ty = self.b.func.dfg.value_type(v);
        let float = ty.is_float();
        Ok(match op {
            UnaryOp::Neg if float => self.b.ins().fneg(v),
            UnaryOp::Neg => self.b.ins().ineg(v),
            UnaryOp::Abs if float => self.b.ins().fabs(v),
            UnaryOp::Abs => self.b.ins().iabs(v),
            UnaryOp::Sign if float => {
                let (zero, one) = self.float_pair(ty, 0.0, 1.0);
                let minus = self.b.ins().fneg(one);
                let positive = self.b.ins().fcmp(FloatCC::GreaterThan, v, zero);
                let negative = self.b.ins().fcmp(FloatCC::LessThan, v, zero);
                let low = self.b.ins().select(negative, minus, v);
                self.b.ins().select(positive, one, low)
            }
            UnaryOp::Sign => {
                let positive = self.b.ins().icmp_imm_s(IntCC::SignedGreaterThan, v, 0);
                let negative = self.b.ins().icmp_imm_s(IntCC::SignedLessThan, v, 0);
                let (one, zero, minus) =
                    (self.b.ins().iconst(ty, 1), self.b.ins().iconst(ty, 0), self.b.ins().iconst(ty, -1));
                let low = self.b.ins().select(negative, minus, zero);
                self.b.ins().select(positive, one, low)
            }
            UnaryOp::Sqrt => self.b.ins().sqrt(v),
            UnaryOp::Floor => self.b.ins().floor(v),
            UnaryOp::Recip => {
                let (_, one) = self.float_pair(ty, 0.0, 1.0);
                self.b.ins().fdiv(one, v)
            }
            // An f32 `exp` outside widened loops takes the same polynomial
            // as inside them, in lane 0: no call, and the scalar tail of a
            // widened loop agrees with its vector body.
            UnaryOp::Exp if ty == types::F32 => {
                let lanes = self.b.ins().splat(types::F32X4, v);
                let e = self.vector_exp(lanes);
                self.b.ins().extractlane(e, 0)
            }
            UnaryOp::Exp => self.float_call("exp", &[v])?,
            UnaryOp::Log => self.float_call("log", &[v])?,
            UnaryOp::Sin => self.float_call("sin", &[v])?,
            UnaryOp::Cos => self.float_call("cos", &[v])?,
            UnaryOp::Tanh => self.float_call("tanh", &[v])?,
            UnaryOp::Not => self.b.ins().bxor_imm_s(v, 1),
        })
    }

    fn float_pair(&mut self, ty: cranelift_codegen::ir::Type, a: f64, b: f64) -> (Value, Value) {
        if ty == types::F32 {
            (self.b.ins().f32const(a as f32), self.b.ins().f32const(b as f32))
        } else {
            (self.b.ins().f64const(a), self.b.ins().f64const(b))
        }
    }

    /// `kiln_ir::random::bits(key, stream, counter)` computed inline: three
    /// rounds of SplitMix64's finalizer, the same bits as the interpreter.
    fn random_bits(&mut self, key: Value, stream: u64, counter: Value) -> Value {
        const GOLDEN: i64 = 0x9e37_79b9_7f4a_7c15_u64 as i64;
        const M1: i64 = 0xbf58_476d_1ce4_e5b9_u64 as i64;
        const M2: i64 = 0x94d0_49bb_1331_11eb_u64 as i64;
        let mix = |k: &mut Self, z: Value| {
            let z = k.b.ins().iadd_imm_s(z, GOLDEN);
            let s = k.b.ins().ushr_imm_u(z, 30);
            let z = k.b.ins().bxor(z, s);
            let z = k.b.ins().imul_imm_s(z, M1);
            let s = k.b.ins().ushr_imm_u(z, 27);
            let z = k.b.ins().bxor(z, s);
            let z = k.b.ins().imul_imm_s(z, M2);
            let s = k.b.ins().ushr_imm_u(z, 31);
            k.b.ins().bxor(z, s)
        };
        let x = self.b.ins().bxor_imm_s(counter, GOLDEN);
        let a = mix(self, x);
        let x = self.b.ins().bxor_imm_s(a, stream.wrapping_mul(M1 as u64) as i64);
        let b = mix(self, x);
        let scrambled_key = self.b.ins().imul_imm_s(key, M2);
        let x = self.b.ins().bxor(b, scrambled_key);
        mix(self, x)
    }

    /// `kiln_ir::random::bits31(key, stream, counter)` inline, on an i32
    /// counter or on four i32 counter lanes (`counter`'s type decides).
    pub fn random_bits31(&mut self, key: &KExpr, stream: u64, counter: Value) -> Gen<Value> {
        let (s1, s2) = match self.seeds.get(&(key.clone(), stream)) {
            Some(&slot) => {
                let pointer = self.pointer;
                (
                    self.b.ins().stack_load(pointer, types::I32, slot, 0),
                    self.b.ins().stack_load(pointer, types::I32, slot, 4),
                )
            }
            None => {
                let key = self.expr(key)?;
                self.seeds32(key, stream)
            }
        };
        let ty = self.b.func.dfg.value_type(counter);
        let (s1, s2) = if ty.is_vector() { (self.b.ins().splat(ty, s1), self.b.ins().splat(ty, s2)) } else { (s1, s2) };
        let x = self.b.ins().bxor(counter, s1);
        let h = self.fmix32(x);
        let h = self.b.ins().iadd(h, s2);
        let h = self.fmix32(h);
        Ok(self.b.ins().ushr_imm_u(h, 1))
    }

    /// `kiln_ir::random::seeds32(key, stream)`, two i32 values.
    pub fn seeds32(&mut self, key: Value, stream: u64) -> (Value, Value) {
        let low = self.b.ins().ireduce(types::I32, key);
        let high = self.b.ins().ushr_imm_u(key, 32);
        let high = self.b.ins().ireduce(types::I32, high);
        let k = self.b.ins().bxor(low, high);
        let salt = (stream as u32).wrapping_mul(0x9e37_79b9) ^ 0x85eb_ca6b;
        let k = self.b.ins().bxor_imm_s(k, i64::from(salt as i32));
        let s1 = self.fmix32(k);
        let k = self.b.ins().bxor_imm_s(s1, i64::from(0xc2b2_ae35_u32 as i32));
        (s1, self.fmix32(k))
    }

    /// MurmurHash3's 32-bit finalizer on an i32 or on i32 lanes.
    fn fmix32(&mut self, h: Value) -> Value {
        let ty = self.b.func.dfg.value_type(h);
        let multiply = |k: &mut Self, h: Value, c: u32| {
            let c = k.b.ins().iconst(types::I32, i64::from(c as i32));
            let c = if ty.is_vector() { k.b.ins().splat(ty, c) } else { c };
            k.b.ins().imul(h, c)
        };
        let s = self.b.ins().ushr_imm_u(h, 16);
        let h = self.b.ins().bxor(h, s);
        let h = multiply(self, h, 0x85eb_ca6b);
        let s = self.b.ins().ushr_imm_u(h, 13);
        let h = self.b.ins().bxor(h, s);
        let h = multiply(self, h, 0xc2b2_ae35);
        let s = self.b.ins().ushr_imm_u(h, 16);
        self.b.ins().bxor(h, s)
    }

    fn binary(&mut self, op: BinaryOp, x: Value, y: Value) -> Gen<Value> {
        let ty = self.b.func.dfg.value_type(x);
        let float = ty.is_float();
        Ok(match op {
            BinaryOp::Add if float => self.b.ins().fadd(x, y),
            BinaryOp::Sub if float => self.b.ins().fsub(x, y),
            BinaryOp::Mul if float => self.b.ins().fmul(x, y),
            BinaryOp::Div if float => self.b.ins().fdiv(x, y),
            BinaryOp::Max if float => self.b.ins().fmax(x, y),
            BinaryOp::Min if float => self.b.ins().fmin(x, y),
            BinaryOp::Pow => self.float_call("pow", &[x, y])?,
            BinaryOp::Add => self.b.ins().iadd(x, y),
            BinaryOp::Sub => self.b.ins().isub(x, y),
            BinaryOp::Mul => self.b.ins().imul(x, y),
            BinaryOp::Max => self.b.ins().smax(x, y),
            BinaryOp::Min => self.b.ins().smin(x, y),
            BinaryOp::Div => self.integer_division(x, y),
            BinaryOp::And => self.b.ins().band(x, y),
            BinaryOp::Or => self.b.ins().bor(x, y),
        })
    }

    /// `x / y` truncating, wrapping `MIN / -1`; dividing by zero sets the
    /// status and gives 0, instead of the trap a bare `sdiv` would raise.
    fn integer_division(&mut self, x: Value, y: Value) -> Value {
        let ty = self.b.func.dfg.value_type(x);
        let zero = self.b.ins().icmp_imm_s(IntCC::Equal, y, 0);
        let minus_one = self.b.ins().icmp_imm_s(IntCC::Equal, y, -1);
        let one = self.b.ins().iconst(ty, 1);
        let unsafe_divisor = self.b.ins().bor(zero, minus_one);
        let divisor = self.b.ins().select(unsafe_divisor, one, y);
        let quotient = self.b.ins().sdiv(x, divisor);
        let negated = self.b.ins().ineg(x);
        let z = self.b.ins().iconst(ty, 0);
        let by_minus_one = self.b.ins().select(minus_one, negated, quotient);
        let status = self.b.use_var(self.status());
        let flag = self.b.ins().iconst(types::I32, super::STATUS_DIVISION_BY_ZERO);
        let flagged = self.b.ins().select(zero, flag, status);
        self.b.def_var(self.status(), flagged);
        self.b.ins().select(zero, z, by_minus_one)
    }

    /// `x op y` for scalars, or lane by lane for vectors (a mask).
    pub(crate) fn compare(&mut self, op: CompareOp, x: Value, y: Value) -> Value {
        if self.b.func.dfg.value_type(x).lane_type().is_float() {
            let cc = match op {
                CompareOp::Eq => FloatCC::Equal,
                CompareOp::Ne => FloatCC::NotEqual,
                CompareOp::Lt => FloatCC::LessThan,
                CompareOp::Le => FloatCC::LessThanOrEqual,
                CompareOp::Gt => FloatCC::GreaterThan,
                CompareOp::Ge => FloatCC::GreaterThanOrEqual,
            };
            self.b.ins().fcmp(cc, x, y)
        } else {
            let cc = match op {
                CompareOp::Eq => IntCC::Equal,
                CompareOp::Ne => IntCC::NotEqual,
                CompareOp::Lt => IntCC::SignedLessThan,
                CompareOp::Le => IntCC::SignedLessThanOrEqual,
                CompareOp::Gt => IntCC::SignedGreaterThan,
                CompareOp::Ge => IntCC::SignedGreaterThanOrEqual,
            };
            self.b.ins().icmp(cc, x, y)
        }
    }
}
