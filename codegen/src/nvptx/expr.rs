//! Scalar expressions to LLVM IR with the graph IR's semantics, as the CPU
//! backend has them: NaN-propagating max and min (`llvm.maximum`), wrapping
//! integer arithmetic, saturating float-to-integer casts, integer division
//! by zero reported through the status (the quotient is then 0), a computed
//! index out of range reported and replaced by 0, the same random bits.
//!
//! f32 transcendentals use the GPU's approximate `ex2`/`lg2`/`sin`/`cos`
//! with range reduction (`exp`, `log` within a few ulp plus the rounding of
//! the argument's scaling; `tanh` from `exp` or, near 0, its series); the
//! f64 ones are not supported yet and are reported as such.

use inkwell::values::{BasicValueEnum, IntValue};
use inkwell::{FloatPredicate, IntPredicate};
use kiln_ir::kernel::{Affine, KExpr, Size};
use kiln_ir::{BinaryOp, CompareOp, DType, Literal, UnaryOp};

use super::emit::{E, Emitter};

/// The status code of a computed index out of its bound.
pub const STATUS_INDEX_OUT_OF_RANGE: i32 = 1;
/// The status code of an integer division by zero.
pub const STATUS_DIVISION_BY_ZERO: i32 = 2;

impl<'c> Emitter<'c, '_> {
    /// The dtype of an expression's value.
    fn type_of(&self, e: &KExpr) -> E<DType> {
        Ok(match e {
            KExpr::Const { dtype, .. } | KExpr::Index { dtype, .. } | KExpr::RandomBits { dtype, .. } => *dtype,
            KExpr::Cast(dtype, _) => *dtype,
            KExpr::Load { buffer, .. } | KExpr::Gather { buffer, .. } => self.dtype(*buffer)?,
            KExpr::Acc(acc) => match self.accs.get(acc) {
                Some((_, dtype, _)) => *dtype,
                None => return self.unsupported(format!("accumulator {acc} used outside the launch that declares it")),
            },
            KExpr::Unary(_, x) => self.type_of(x)?,
            KExpr::Binary(_, a, _) => self.type_of(a)?,
            KExpr::Compare(..) => DType::Bool,
            KExpr::Select(_, a, _) => self.type_of(a)?,
        })
    }

    pub fn expr(&mut self, e: &KExpr) -> E<BasicValueEnum<'c>> {
        match e {
            KExpr::Const { value, dtype } => self.constant(*value, *dtype),
            KExpr::Index { index, dtype } => {
                let i = self.affine(index)?;
                self.convert(i.into(), DType::I64, *dtype)
            }
            KExpr::Load { buffer, index } => {
                let at = self.affine(index)?;
                self.load_element(*buffer, at)
            }
            KExpr::Gather { buffer, base, index, stride, bound } => {
                let at = self.checked_index(base, index, stride, bound)?;
                self.load_element(*buffer, at)
            }
            KExpr::Acc(acc) => {
                let dtype = self.type_of(e)?;
                let slot = self.accs[acc].0;
                Ok(self.b.build_load(self.reg_type(dtype), slot, "")?)
            }
            KExpr::Unary(op, x) => {
                let dtype = self.type_of(x)?;
                let v = self.expr(x)?;
                self.unary(*op, dtype, v)
            }
            KExpr::Binary(op, a, b) => {
                let dtype = self.type_of(a)?;
                let (x, y) = (self.expr(a)?, self.expr(b)?);
                self.binary(*op, dtype, x, y)
            }
            KExpr::Compare(op, a, b) => {
                let dtype = self.type_of(a)?;
                let (x, y) = (self.expr(a)?, self.expr(b)?);
                Ok(self.compare(*op, dtype, x, y)?.into())
            }
            KExpr::Select(c, a, b) => {
                let (c, x, y) = (self.expr(c)?, self.expr(a)?, self.expr(b)?);
                Ok(self.b.build_select(c.into_int_value(), x, y, "")?)
            }
            KExpr::Cast(to, x) => {
                let from = self.type_of(x)?;
                let v = self.expr(x)?;
                self.convert(v, from, *to)
            }
            KExpr::RandomBits { key, stream, counter, dtype: DType::I32 } => {
                let key = self.expr(key)?.into_int_value();
                let counter = self.affine(counter)?;
                let counter = self.b.build_int_truncate(counter, self.cx.i32_type(), "")?;
                Ok(self.random_bits31(key, *stream, counter)?.into())
            }
            KExpr::RandomBits { key, stream, counter, dtype } => {
                let key = self.expr(key)?.into_int_value();
                let counter = self.affine(counter)?;
                let bits = self.random_bits(key, *stream, counter)?;
                let bits = self.b.build_right_shift(bits, self.i64(1), false, "")?;
                self.convert(bits.into(), DType::I64, *dtype)
            }
        }
    }

    /// `base + stride * index`, with `index` checked in `0..bound`: outside
    /// it, the status says so and the element at `base` is used instead.
    pub fn checked_index(&mut self, base: &Affine, index: &KExpr, stride: &Size, bound: &Size) -> E<IntValue<'c>> {
        let from = self.type_of(index)?;
        let i = self.expr(index)?;
        let i = self.convert(i, from, DType::I64)?.into_int_value();
        let outside = self.b.build_int_compare(IntPredicate::UGE, i, self.size(bound)?, "")?;
        self.flag_if(outside, STATUS_INDEX_OUT_OF_RANGE)?;
        let i = self.b.build_select(outside, self.i64(0), i, "")?.into_int_value();
        let base = self.affine(base)?;
        let offset = self.b.build_int_mul(i, self.size(stride)?, "")?;
        Ok(self.b.build_int_add(base, offset, "")?)
    }

    fn constant(&self, value: Literal, dtype: DType) -> E<BasicValueEnum<'c>> {
        Ok(match (value, dtype) {
            (Literal::Float(x), DType::F32) => self.cx.f32_type().const_float(f64::from(x.get() as f32)).into(),
            (Literal::Float(x), _) => self.cx.f64_type().const_float(x.get()).into(),
            (Literal::Int(i), DType::I32) => self.i32(i as i32).into(),
            (Literal::Int(i), _) => self.i64(i).into(),
            (Literal::Bool(b), _) => self.cx.bool_type().const_int(u64::from(b), false).into(),
        })
    }

    fn float_constant(&self, dtype: DType, x: f64) -> BasicValueEnum<'c> {
        match dtype {
            DType::F32 => self.cx.f32_type().const_float(f64::from(x as f32)).into(),
            _ => self.cx.f64_type().const_float(x).into(),
        }
    }

    /// Converts between dtypes as the graph op `cast` does.
    fn convert(&self, v: BasicValueEnum<'c>, from: DType, to: DType) -> E<BasicValueEnum<'c>> {
        let b = &self.b;
        let target = self.reg_type(to);
        Ok(match (from, to) {
            (f, t) if f == t => v,
            (DType::F32, DType::F64) => b.build_float_ext(v.into_float_value(), self.cx.f64_type(), "")?.into(),
            (DType::F64, DType::F32) => b.build_float_trunc(v.into_float_value(), self.cx.f32_type(), "")?.into(),
            (f, DType::Bool) if f.is_float() => {
                let zero = self.float_constant(f, 0.0).into_float_value();
                b.build_float_compare(FloatPredicate::UNE, v.into_float_value(), zero, "")?.into()
            }
            (_, DType::Bool) => {
                let v = v.into_int_value();
                b.build_int_compare(IntPredicate::NE, v, v.get_type().const_zero(), "")?.into()
            }
            (f, _) if f.is_float() => self.intrinsic("llvm.fptosi.sat", &[target, self.reg_type(f)], &[v])?,
            (DType::Bool, t) if t.is_float() => {
                b.build_unsigned_int_to_float(v.into_int_value(), target.into_float_type(), "")?.into()
            }
            (_, t) if t.is_float() => {
                b.build_signed_int_to_float(v.into_int_value(), target.into_float_type(), "")?.into()
            }
            (DType::Bool, _) => b.build_int_z_extend(v.into_int_value(), target.into_int_type(), "")?.into(),
            (DType::I32, DType::I64) => b.build_int_s_extend(v.into_int_value(), self.cx.i64_type(), "")?.into(),
            (DType::I64, DType::I32) => b.build_int_truncate(v.into_int_value(), self.cx.i32_type(), "")?.into(),
            _ => v,
        })
    }

    fn unary(&mut self, op: UnaryOp, dtype: DType, v: BasicValueEnum<'c>) -> E<BasicValueEnum<'c>> {
        let ty = self.reg_type(dtype);
        let float = dtype.is_float();
        let b = &self.b;
        Ok(match op {
            UnaryOp::Neg if float => b.build_float_neg(v.into_float_value(), "")?.into(),
            UnaryOp::Neg => b.build_int_neg(v.into_int_value(), "")?.into(),
            UnaryOp::Abs if float => self.intrinsic("llvm.fabs", &[ty], &[v])?,
            UnaryOp::Abs => self.intrinsic("llvm.abs", &[ty], &[v, self.cx.bool_type().const_zero().into()])?,
            UnaryOp::Sign if float => {
                let (zero, one, minus) = (
                    self.float_constant(dtype, 0.0),
                    self.float_constant(dtype, 1.0),
                    self.float_constant(dtype, -1.0),
                );
                let positive = self.float_less(zero, v)?;
                let negative = self.float_less(v, zero)?;
                let low = b.build_select(negative, minus, v, "")?;
                b.build_select(positive, one, low, "")?
            }
            UnaryOp::Sign => {
                let v = v.into_int_value();
                let int = v.get_type();
                let positive = b.build_int_compare(IntPredicate::SGT, v, int.const_zero(), "")?;
                let negative = b.build_int_compare(IntPredicate::SLT, v, int.const_zero(), "")?;
                let low = b.build_select(negative, int.const_all_ones(), int.const_zero(), "")?;
                b.build_select(positive, int.const_int(1, false), low.into_int_value(), "")?
            }
            UnaryOp::Sqrt => self.intrinsic("llvm.sqrt", &[ty], &[v])?,
            UnaryOp::Floor => self.intrinsic("llvm.floor", &[ty], &[v])?,
            UnaryOp::Recip => {
                let one = self.float_constant(dtype, 1.0).into_float_value();
                b.build_float_div(one, v.into_float_value(), "")?.into()
            }
            UnaryOp::Not => b.build_xor(v.into_int_value(), self.cx.bool_type().const_int(1, false), "")?.into(),
            UnaryOp::Exp | UnaryOp::Log | UnaryOp::Sin | UnaryOp::Cos | UnaryOp::Tanh if dtype != DType::F32 => {
                return self.unsupported(format!("{} on {dtype}", op_name(op)));
            }
            UnaryOp::Exp => self.exp(v)?,
            UnaryOp::Log => {
                let l = self.special("lg2", v)?;
                self.fmul(l, std::f64::consts::LN_2)?
            }
            UnaryOp::Sin | UnaryOp::Cos => {
                // r = x - 2 pi round(x / 2 pi), with 2 pi in two parts.
                let turns = self.fmul(v, 1.0 / std::f64::consts::TAU)?;
                let turns = self.intrinsic("llvm.rint", &[ty], &[turns])?;
                let hi = self.float_constant(dtype, -6.283_185_5);
                let lo = self.float_constant(dtype, 1.748_455_5e-7);
                let r = self.intrinsic("llvm.fma", &[ty], &[turns, hi, v])?;
                let r = self.intrinsic("llvm.fma", &[ty], &[turns, lo, r])?;
                self.special(if op == UnaryOp::Sin { "sin" } else { "cos" }, r)?
            }
            UnaryOp::Tanh => self.tanh(v)?,
        })
    }

    fn fmul(&self, v: BasicValueEnum<'c>, c: f64) -> E<BasicValueEnum<'c>> {
        let c = self.float_constant(DType::F32, c).into_float_value();
        Ok(self.b.build_float_mul(v.into_float_value(), c, "")?.into())
    }

    /// `exp(x) = 2^(x log2 e)` on the special function unit.
    fn exp(&self, v: BasicValueEnum<'c>) -> E<BasicValueEnum<'c>> {
        let scaled = self.fmul(v, std::f64::consts::LOG2_E)?;
        self.special("ex2", scaled)
    }

    /// `tanh x = 1 - 2 / (exp(2x) + 1)`; for |x| < 0.125 the series
    /// `x - x^3/3 + 2x^5/15 - 17x^7/315` (no cancellation near 0).
    fn tanh(&self, x: BasicValueEnum<'c>) -> E<BasicValueEnum<'c>> {
        let b = &self.b;
        let f = |c: f64| self.float_constant(DType::F32, c).into_float_value();
        let xf = x.into_float_value();
        let e = self.exp(self.fmul(x, 2.0)?)?.into_float_value();
        let big = b.build_float_sub(f(1.0), b.build_float_div(f(2.0), b.build_float_add(e, f(1.0), "")?, "")?, "")?;
        let x2 = b.build_float_mul(xf, xf, "")?;
        let mut p = f(-17.0 / 315.0);
        for c in [2.0 / 15.0, -1.0 / 3.0, 1.0] {
            p = b.build_float_add(b.build_float_mul(p, x2, "")?, f(c), "")?;
        }
        let small = b.build_float_mul(p, xf, "")?;
        let magnitude = self.intrinsic("llvm.fabs", &[self.reg_type(DType::F32)], &[x])?;
        let near0 = self.float_less(magnitude, f(0.125).into())?;
        Ok(b.build_select(near0, small, big, "")?)
    }

    fn binary(
        &mut self,
        op: BinaryOp,
        dtype: DType,
        x: BasicValueEnum<'c>,
        y: BasicValueEnum<'c>,
    ) -> E<BasicValueEnum<'c>> {
        let ty = self.reg_type(dtype);
        let b = &self.b;
        if dtype.is_float() {
            let (a, c) = (x.into_float_value(), y.into_float_value());
            return Ok(match op {
                BinaryOp::Add => b.build_float_add(a, c, "")?.into(),
                BinaryOp::Sub => b.build_float_sub(a, c, "")?.into(),
                BinaryOp::Mul => b.build_float_mul(a, c, "")?.into(),
                BinaryOp::Div => b.build_float_div(a, c, "")?.into(),
                BinaryOp::Max => self.intrinsic("llvm.maximum", &[ty], &[x, y])?,
                BinaryOp::Min => self.intrinsic("llvm.minimum", &[ty], &[x, y])?,
                BinaryOp::Pow if dtype == DType::F32 => self.pow(x, y)?,
                _ => return self.unsupported(format!("{op:?} on {dtype}")),
            });
        }
        let (a, c) = (x.into_int_value(), y.into_int_value());
        Ok(match op {
            BinaryOp::Add => b.build_int_add(a, c, "")?.into(),
            BinaryOp::Sub => b.build_int_sub(a, c, "")?.into(),
            BinaryOp::Mul => b.build_int_mul(a, c, "")?.into(),
            BinaryOp::Max => self.intrinsic("llvm.smax", &[ty], &[x, y])?,
            BinaryOp::Min => self.intrinsic("llvm.smin", &[ty], &[x, y])?,
            BinaryOp::Div => self.integer_division(a, c)?.into(),
            BinaryOp::And => b.build_and(a, c, "")?.into(),
            BinaryOp::Or => b.build_or(a, c, "")?.into(),
            BinaryOp::Pow => return self.unsupported(format!("pow on {dtype}")),
        })
    }

    /// `x ** y = 2^(y log2 |x|)`, negated for a negative `x` and an odd
    /// integer `y`, NaN for a negative `x` and a `y` that is no integer.
    fn pow(&self, x: BasicValueEnum<'c>, y: BasicValueEnum<'c>) -> E<BasicValueEnum<'c>> {
        let b = &self.b;
        let f32t = self.reg_type(DType::F32);
        let f = |c: f64| self.float_constant(DType::F32, c).into_float_value();
        let magnitude = self.intrinsic("llvm.fabs", &[f32t], &[x])?;
        let l = self.special("lg2", magnitude)?;
        let r = self.special("ex2", b.build_float_mul(l.into_float_value(), y.into_float_value(), "")?.into())?;
        let yf = y.into_float_value();
        let whole = self.intrinsic("llvm.trunc", &[f32t], &[y])?.into_float_value();
        let integer = b.build_float_compare(FloatPredicate::OEQ, whole, yf, "")?;
        let half = b.build_float_mul(yf, f(0.5), "")?;
        let half_whole = self.intrinsic("llvm.trunc", &[f32t], &[half.into()])?.into_float_value();
        let odd = b.build_and(integer, b.build_float_compare(FloatPredicate::ONE, half_whole, half, "")?, "")?;
        let negative = self.float_less(x, f(0.0).into())?;
        let flip = b.build_and(negative, odd, "")?;
        let signed = b.build_select(flip, b.build_float_neg(r.into_float_value(), "")?, r.into_float_value(), "")?;
        let invalid = b.build_and(negative, b.build_not(integer, "")?, "")?;
        let one = b.build_float_compare(FloatPredicate::OEQ, yf, f(0.0), "")?;
        let v = b.build_select(invalid, f(f64::NAN), signed.into_float_value(), "")?;
        Ok(b.build_select(one, f(1.0), v.into_float_value(), "")?)
    }

    /// `x / y` truncating, wrapping `MIN / -1`; dividing by zero sets the
    /// status and gives 0.
    fn integer_division(&self, x: IntValue<'c>, y: IntValue<'c>) -> E<IntValue<'c>> {
        let b = &self.b;
        let ty = x.get_type();
        let zero = b.build_int_compare(IntPredicate::EQ, y, ty.const_zero(), "")?;
        let minus_one = b.build_int_compare(IntPredicate::EQ, y, ty.const_all_ones(), "")?;
        let unsafe_divisor = b.build_or(zero, minus_one, "")?;
        let divisor = b.build_select(unsafe_divisor, ty.const_int(1, false), y, "")?.into_int_value();
        let quotient = b.build_int_signed_div(x, divisor, "")?;
        let negated = b.build_int_neg(x, "")?;
        let by_minus_one = b.build_select(minus_one, negated, quotient, "")?.into_int_value();
        self.flag_if(zero, STATUS_DIVISION_BY_ZERO)?;
        Ok(b.build_select(zero, ty.const_zero(), by_minus_one, "")?.into_int_value())
    }

    fn compare(&self, op: CompareOp, dtype: DType, x: BasicValueEnum<'c>, y: BasicValueEnum<'c>) -> E<IntValue<'c>> {
        if dtype.is_float() {
            let p = match op {
                CompareOp::Eq => FloatPredicate::OEQ,
                CompareOp::Ne => FloatPredicate::UNE,
                CompareOp::Lt => FloatPredicate::OLT,
                CompareOp::Le => FloatPredicate::OLE,
                CompareOp::Gt => FloatPredicate::OGT,
                CompareOp::Ge => FloatPredicate::OGE,
            };
            return Ok(self.b.build_float_compare(p, x.into_float_value(), y.into_float_value(), "")?);
        }
        let p = match op {
            CompareOp::Eq => IntPredicate::EQ,
            CompareOp::Ne => IntPredicate::NE,
            CompareOp::Lt => IntPredicate::SLT,
            CompareOp::Le => IntPredicate::SLE,
            CompareOp::Gt => IntPredicate::SGT,
            CompareOp::Ge => IntPredicate::SGE,
        };
        Ok(self.b.build_int_compare(p, x.into_int_value(), y.into_int_value(), "")?)
    }

    /// `kiln_ir::random::bits(key, stream, counter)`: three rounds of
    /// SplitMix64's finalizer, the interpreter's bits.
    fn random_bits(&self, key: IntValue<'c>, stream: u64, counter: IntValue<'c>) -> E<IntValue<'c>> {
        const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;
        const M1: u64 = 0xbf58_476d_1ce4_e5b9;
        const M2: u64 = 0x94d0_49bb_1331_11eb;
        let b = &self.b;
        let c = |v: u64| self.cx.i64_type().const_int(v, false);
        let mix = |z: IntValue<'c>| -> E<IntValue<'c>> {
            let z = b.build_int_add(z, c(GOLDEN), "")?;
            let z = b.build_xor(z, b.build_right_shift(z, c(30), false, "")?, "")?;
            let z = b.build_int_mul(z, c(M1), "")?;
            let z = b.build_xor(z, b.build_right_shift(z, c(27), false, "")?, "")?;
            let z = b.build_int_mul(z, c(M2), "")?;
            Ok(b.build_xor(z, b.build_right_shift(z, c(31), false, "")?, "")?)
        };
        let a = mix(b.build_xor(counter, c(GOLDEN), "")?)?;
        let x = mix(b.build_xor(a, c(stream.wrapping_mul(M1)), "")?)?;
        let scrambled_key = b.build_int_mul(key, c(M2), "")?;
        mix(b.build_xor(x, scrambled_key, "")?)
    }

    /// `kiln_ir::random::bits31(key, stream, counter)` on an i32 counter.
    fn random_bits31(&self, key: IntValue<'c>, stream: u64, counter: IntValue<'c>) -> E<IntValue<'c>> {
        let b = &self.b;
        let i32t = self.cx.i32_type();
        let c = |v: u32| i32t.const_int(u64::from(v), false);
        let low = b.build_int_truncate(key, i32t, "")?;
        let high = b.build_int_truncate(b.build_right_shift(key, self.i64(32), false, "")?, i32t, "")?;
        let salt = (stream as u32).wrapping_mul(0x9e37_79b9) ^ 0x85eb_ca6b;
        let k = b.build_xor(b.build_xor(low, high, "")?, c(salt), "")?;
        let s1 = self.fmix32(k)?;
        let s2 = self.fmix32(b.build_xor(s1, c(0xc2b2_ae35), "")?)?;
        let h = self.fmix32(b.build_xor(counter, s1, "")?)?;
        let h = self.fmix32(b.build_int_add(h, s2, "")?)?;
        Ok(b.build_right_shift(h, c(1), false, "")?)
    }

    /// MurmurHash3's 32-bit finalizer.
    fn fmix32(&self, h: IntValue<'c>) -> E<IntValue<'c>> {
        let b = &self.b;
        let c = |v: u32| self.cx.i32_type().const_int(u64::from(v), false);
        let h = b.build_xor(h, b.build_right_shift(h, c(16), false, "")?, "")?;
        let h = b.build_int_mul(h, c(0x85eb_ca6b), "")?;
        let h = b.build_xor(h, b.build_right_shift(h, c(13), false, "")?, "")?;
        let h = b.build_int_mul(h, c(0xc2b2_ae35), "")?;
        Ok(b.build_xor(h, b.build_right_shift(h, c(16), false, "")?, "")?)
    }
}

fn op_name(op: UnaryOp) -> &'static str {
    match op {
        UnaryOp::Exp => "exp",
        UnaryOp::Log => "log",
        UnaryOp::Sin => "sin",
        UnaryOp::Cos => "cos",
        UnaryOp::Tanh => "tanh",
        _ => "this op",
    }
}
