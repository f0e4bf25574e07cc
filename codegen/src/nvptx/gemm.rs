//! The runtime GEMM call as a shared-memory tiled kernel: block `(x, y, z)`
//! of `TILE x TILE` threads computes the `TILE x TILE` tile of product `z`
//! at tile row `y`, tile column `x`. For each `TILE`-wide slice of `k` the
//! block stages one tile of `a` and one of `b` in shared memory (zeros past
//! the matrices' edges), waits, and each thread accumulates its element
//! from the two tiles. Strides come from the call's matrix references, so
//! transposed operands are read in place.

use inkwell::IntPredicate;
use inkwell::values::{BasicValueEnum, IntValue, PointerValue};
use kiln_ir::kernel::{MatrixRef, RuntimeCall};

use super::emit::{E, Emitter, Sreg};
use super::launch::TILE;

impl<'c> Emitter<'c, '_> {
    pub fn gemm(&mut self, call: &RuntimeCall) -> E<()> {
        let RuntimeCall::Gemm { m, n, k: depth, a, b, c, .. } = call;
        let dtype = self.dtype(c.buffer)?;
        if self.dtype(a.buffer)? != dtype || self.dtype(b.buffer)? != dtype || !dtype.is_numeric() {
            return self.unsupported(format!("a GEMM of {dtype} with operands of other dtypes"));
        }
        let ty = self.reg_type(dtype);
        let tile = i64::from(TILE);
        let (tx, ty_) = (self.sreg(Sreg::TidX)?, self.sreg(Sreg::TidY)?);
        let (bx, by, bz) = (self.sreg(Sreg::CtaidX)?, self.sreg(Sreg::CtaidY)?, self.sreg(Sreg::CtaidZ)?);
        let row = self.b.build_int_add(self.b.build_int_mul(by, self.i64(tile), "")?, ty_, "row")?;
        let col = self.b.build_int_add(self.b.build_int_mul(bx, self.i64(tile), "")?, tx, "col")?;
        let a_tile = self.shared_array(ty, TILE * TILE);
        let b_tile = self.shared_array(ty, TILE * TILE);
        let zero = self.identity(dtype, kiln_ir::ReduceKind::Sum)?;
        let sum = self.alloca(ty)?;
        self.b.build_store(sum, zero)?;
        let row_in = self.b.build_int_compare(IntPredicate::SLT, row, self.size(m)?, "")?;
        let col_in = self.b.build_int_compare(IntPredicate::SLT, col, self.size(n)?, "")?;
        let mine = self.b.build_int_add(self.b.build_int_mul(ty_, self.i64(tile), "")?, tx, "")?;
        // ceil(k / TILE), computed in the kernel from the size arguments.
        let k_size = self.size(depth)?;
        let slices = self.b.build_int_unsigned_div(
            self.b.build_int_add(k_size, self.i64(tile - 1), "")?,
            self.i64(tile),
            "slices",
        )?;
        self.counted(slices, |e, s| {
            let start = e.b.build_int_mul(s, e.i64(tile), "")?;
            // a[row, start + tx] and b[start + ty, col] into the tiles.
            let ak = e.b.build_int_add(start, tx, "")?;
            let ak_in = e.b.build_int_compare(IntPredicate::SLT, ak, e.size(depth)?, "")?;
            let a_in = e.b.build_and(row_in, ak_in, "")?;
            let av = e.guarded_load(a.clone(), bz, row, ak, a_in, zero)?;
            e.b.build_store(e.shared_at(ty, a_tile, mine)?, av)?;
            let bk = e.b.build_int_add(start, ty_, "")?;
            let bk_in = e.b.build_int_compare(IntPredicate::SLT, bk, e.size(depth)?, "")?;
            let b_in = e.b.build_and(bk_in, col_in, "")?;
            let bv = e.guarded_load(b.clone(), bz, bk, col, b_in, zero)?;
            e.b.build_store(e.shared_at(ty, b_tile, mine)?, bv)?;
            e.barrier()?;
            let mut acc = e.b.build_load(ty, sum, "")?;
            for q in 0..tile {
                let at = e.b.build_int_add(e.b.build_int_mul(ty_, e.i64(tile), "")?, e.i64(q), "")?;
                let x = e.b.build_load(ty, e.shared_at(ty, a_tile, at)?, "")?;
                let at = e.b.build_int_add(e.i64(q * tile), tx, "")?;
                let y = e.b.build_load(ty, e.shared_at(ty, b_tile, at)?, "")?;
                acc = e.multiply_add(x, y, acc, dtype.is_float())?;
            }
            e.b.build_store(sum, acc)?;
            e.barrier()
        })?;
        let inside = self.b.build_and(row_in, col_in, "")?;
        self.when(inside, |e| {
            let at = e.matrix_index(c.clone(), bz, row, col)?;
            let v = e.b.build_load(ty, sum, "")?;
            e.store_element(c.buffer, at, v)
        })
    }

    /// `x * y + acc` (an `fma` for floats).
    fn multiply_add(
        &self,
        x: BasicValueEnum<'c>,
        y: BasicValueEnum<'c>,
        acc: BasicValueEnum<'c>,
        float: bool,
    ) -> E<BasicValueEnum<'c>> {
        if float {
            self.intrinsic("llvm.fma", &[x.get_type()], &[x, y, acc])
        } else {
            let p = self.b.build_int_mul(x.into_int_value(), y.into_int_value(), "")?;
            Ok(self.b.build_int_add(p, acc.into_int_value(), "")?.into())
        }
    }

    fn shared_at(
        &self,
        ty: inkwell::types::BasicTypeEnum<'c>,
        tile: PointerValue<'c>,
        index: IntValue<'c>,
    ) -> E<PointerValue<'c>> {
        // SAFETY: `index` < TILE * TILE, the tile's length.
        Ok(unsafe { self.b.build_in_bounds_gep(ty, tile, &[index], "")? })
    }

    /// The flat index of element `(r, c)` of matrix `batch` of `m`.
    fn matrix_index(&self, m: MatrixRef, batch: IntValue<'c>, r: IntValue<'c>, c: IntValue<'c>) -> E<IntValue<'c>> {
        let b = &self.b;
        let mut at = self.size(&m.offset)?;
        at = b.build_int_add(at, b.build_int_mul(batch, self.size(&m.batch_stride)?, "")?, "")?;
        at = b.build_int_add(at, b.build_int_mul(r, self.size(&m.row_stride)?, "")?, "")?;
        Ok(b.build_int_add(at, b.build_int_mul(c, self.size(&m.col_stride)?, "")?, "")?)
    }

    /// Element `(r, c)` of a matrix where `inside`, else `zero`; nothing is
    /// read outside the matrix.
    fn guarded_load(
        &mut self,
        m: MatrixRef,
        batch: IntValue<'c>,
        r: IntValue<'c>,
        c: IntValue<'c>,
        inside: IntValue<'c>,
        zero: BasicValueEnum<'c>,
    ) -> E<BasicValueEnum<'c>> {
        let slot = self.alloca(zero.get_type())?;
        self.b.build_store(slot, zero)?;
        self.when(inside, |e| {
            let at = e.matrix_index(m.clone(), batch, r, c)?;
            let v = e.load_element(m.buffer, at)?;
            e.b.build_store(slot, v)?;
            Ok(())
        })?;
        Ok(self.b.build_load(zero.get_type(), slot, "")?)
    }
}
