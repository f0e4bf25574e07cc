//! Splitting a kernel into GPU launches. A CPU kernel is an ordered list of
//! top-level statements run by one thread pool; on the GPU each group of
//! statements that can run with one mapping becomes its own launch, in order
//! (a launch boundary is a device-wide barrier, which is what the statement
//! order of a kernel needs).
//!
//! Guarantee: every top-level statement of the kernel lands in exactly one
//! launch, launches keep the statements' order, and each mapping only
//! reorders work that the kernel IR leaves unordered:
//! - [`Mapping::Grid`]: a top-level `parallel` loop, with the perfect nest of
//!   loops below it flattened into one iteration space; each GPU thread runs
//!   the innermost body for the flat indices of a grid-stride loop.
//! - [`Mapping::BlockReduce`]: accumulators declared at the top, one loop
//!   nest that only updates them (never reads them), then statements that
//!   read the results. One block: its threads share the nest's flat
//!   iterations, reduce their partial accumulators with warp shuffles and
//!   shared memory, and thread 0 runs the trailing statements.
//! - [`Mapping::Gemm`]: a runtime GEMM call, as a shared-memory tiled kernel.
//! - [`Mapping::Single`]: anything else, run by one thread in order.

use kiln_ir::kernel::{AccId, BufferId, KExpr, KStmt, Kernel, Plan, RuntimeCall, Size, VarId, buffers_of, hints};
use kiln_ir::{Bindings, DType};

/// Threads per block of grid and reduction launches.
pub const BLOCK: u32 = 256;
/// The GEMM tile: a block of `TILE x TILE` threads computes that many
/// elements of the product.
pub const TILE: u32 = 16;
/// The most blocks a grid launch asks for; a grid-stride loop covers the rest.
pub const MAX_BLOCKS: u64 = 65_535;
/// Consecutive iterations a thread runs of a `vector` loop: 4 f32 make one
/// 16-byte access. Buffers must be 16-byte aligned (the entries say so).
pub const LANES: u32 = 4;

/// How one launch's threads share its statements.
#[derive(Clone, Debug)]
pub enum Mapping<'a> {
    /// `lanes` > 1: each thread runs `lanes` consecutive iterations of the
    /// innermost loop (a `vector` loop whose extent they divide at every
    /// binding: every coefficient of it is a multiple), so that LLVM can
    /// merge their loads and stores into vector accesses.
    Grid {
        loops: Vec<(VarId, Size)>,
        body: &'a [KStmt],
        lanes: u32,
    },
    /// A parallel loop whose body reduces rows of at least 32 elements: one
    /// warp per iteration of `loops`; its lanes share each reduction loop's
    /// iterations and combine their partials with butterfly shuffles (every
    /// lane gets the result), share the other loops' iterations, and lane 0
    /// runs the body's stores.
    WarpRows {
        loops: Vec<(VarId, Size)>,
        body: &'a [KStmt],
    },
    BlockReduce {
        accs: Vec<(AccId, DType, kiln_ir::ReduceKind)>,
        loops: Vec<(VarId, Size)>,
        body: &'a [KStmt],
        tail: &'a [KStmt],
    },
    Gemm(&'a RuntimeCall),
    Single(&'a [KStmt]),
}

/// One GPU launch of a kernel.
#[derive(Clone, Debug)]
pub struct Launch<'a> {
    /// The entry's name: the kernel's, with a suffix when it has several.
    pub name: String,
    pub mapping: Mapping<'a>,
    /// Threads wanted in x, y, z, as sizes of the plan's symbols: what the
    /// grid is sized for at a binding ([`Launch::grid_at`]).
    pub threads: [Size; 3],
    /// Threads per block in x, y, z.
    pub block: [u32; 3],
    /// Static shared memory, in bytes.
    pub shared_bytes: u32,
}

impl Launch<'_> {
    /// Whether the launch's threads synchronize (barriers, shuffles).
    pub fn cooperates(&self) -> bool {
        matches!(self.mapping, Mapping::BlockReduce { .. } | Mapping::Gemm(_) | Mapping::WarpRows { .. })
    }

    /// Whether the grid's x axis is capped at [`MAX_BLOCKS`], a grid-stride
    /// loop covering the threads past it.
    pub fn grid_stride(&self) -> bool {
        matches!(self.mapping, Mapping::Grid { .. } | Mapping::WarpRows { .. })
    }

    /// Blocks in x, y, z at `bindings` (see [`grid_for`]).
    pub fn grid_at(&self, bindings: &Bindings) -> Result<[u64; 3], String> {
        let mut threads = [0u64; 3];
        for (k, t) in self.threads.iter().enumerate() {
            let value = t.eval(bindings).and_then(|v| u64::try_from(v).ok());
            threads[k] = value.ok_or_else(|| format!("{}: no thread count {t} at these sizes", self.name))?;
        }
        Ok(grid_for(self.grid_stride(), threads, self.block))
    }

    /// The grid at `bindings` as a GPU launches it; an error past the
    /// hardware's limits (2^31 - 1 blocks along x, 65 535 along y and z).
    pub fn grid_u32(&self, bindings: &Bindings) -> Result<[u32; 3], String> {
        let blocks = self.grid_at(bindings)?;
        let limits = [(1u64 << 31) - 1, MAX_BLOCKS_YZ, MAX_BLOCKS_YZ];
        let mut grid = [0u32; 3];
        for k in 0..3 {
            if blocks[k] > limits[k] {
                return Err(format!("a grid of {blocks:?} blocks (at most {limits:?})"));
            }
            grid[k] = blocks[k] as u32;
        }
        Ok(grid)
    }

    /// The buffers the launch touches, ascending: its entry's arguments,
    /// followed by the status word.
    pub fn buffers(&self) -> Vec<BufferId> {
        match &self.mapping {
            Mapping::Grid { body, .. } | Mapping::WarpRows { body, .. } | Mapping::Single(body) => buffers_of(body),
            Mapping::BlockReduce { body, tail, .. } => {
                let mut all = buffers_of(body);
                all.extend(buffers_of(tail));
                all.sort();
                all.dedup();
                all
            }
            Mapping::Gemm(call) => buffers_of(std::slice::from_ref(&KStmt::Call((*call).clone()))),
        }
    }
}

/// The launches of one kernel, in order.
pub fn launches<'a>(plan: &Plan, kernel: &'a Kernel) -> Vec<Launch<'a>> {
    let mut groups: Vec<Mapping<'_>> = Vec::new();
    let body = kernel.body.as_slice();
    let hint = hints(&plan.symbols);
    let mut at = 0;
    while at < body.len() {
        let (mapping, used) = next_group(&body[at..], &hint);
        groups.push(mapping);
        at += used;
    }
    let several = groups.len() > 1;
    groups
        .into_iter()
        .enumerate()
        .map(|(i, mapping)| {
            let name = if several { format!("{}_{i}", kernel.name) } else { kernel.name.clone() };
            let (threads, block, shared_bytes) = shape_of(plan, &mapping);
            Launch { name, mapping, threads, block, shared_bytes }
        })
        .collect()
}

/// The mapping of the statements that start `body`, and how many it takes;
/// the one choice made by size (a warp per row for rows of at least
/// [`WARP_ROW`] elements) is taken at `hint`, and either mapping is right
/// at any size.
fn next_group<'a>(body: &'a [KStmt], hint: &Bindings) -> (Mapping<'a>, usize) {
    match &body[0] {
        KStmt::For { parallel: true, .. } => {
            let (loops, inner) = perfect_nest(&body[..1]);
            let lanes = match innermost_vector(&body[0]) {
                v if v >= LANES && loops.last().is_some_and(|l| l.1.div_exact(i64::from(LANES)).is_some()) => LANES,
                _ => 1,
            };
            if warp_rows(inner, hint) {
                return (Mapping::WarpRows { loops, body: inner }, 1);
            }
            (Mapping::Grid { loops, body: inner, lanes }, 1)
        }
        KStmt::Call(call) => (Mapping::Gemm(call), 1),
        KStmt::AccInit { .. } => {
            let inits = body.iter().take_while(|s| matches!(s, KStmt::AccInit { .. })).count();
            let accs: Vec<_> = body[..inits]
                .iter()
                .filter_map(|s| match s {
                    KStmt::AccInit { acc, dtype, kind } => Some((*acc, *dtype, *kind)),
                    _ => None,
                })
                .collect();
            // The trailing statements run once, on thread 0: up to the next
            // parallel loop or call.
            let tail_len = |from: usize| {
                body[from..]
                    .iter()
                    .take_while(|s| !matches!(s, KStmt::For { parallel: true, .. } | KStmt::Call(_)))
                    .count()
            };
            match body.get(inits) {
                Some(nest @ KStmt::For { parallel: false, .. }) if only_updates(nest, &accs) => {
                    let (loops, inner) = perfect_nest(std::slice::from_ref(nest));
                    let tail = tail_len(inits + 1);
                    let mapping =
                        Mapping::BlockReduce { accs, loops, body: inner, tail: &body[inits + 1..inits + 1 + tail] };
                    (mapping, inits + 1 + tail)
                }
                _ => {
                    let end = single_end(body);
                    (Mapping::Single(&body[..end]), end)
                }
            }
        }
        _ => {
            let end = single_end(body);
            (Mapping::Single(&body[..end]), end)
        }
    }
}

/// Statements up to the next parallel loop or call run by one thread (at
/// least one statement).
fn single_end(body: &[KStmt]) -> usize {
    1 + body[1..].iter().take_while(|s| !matches!(s, KStmt::For { parallel: true, .. } | KStmt::Call(_))).count()
}

/// The shortest reduction a warp shares: a row of at least a warp's lanes.
pub const WARP_ROW: u64 = 32;

/// Whether a parallel loop's body suits one warp per iteration: its
/// statements are accumulator declarations, loops that only update
/// accumulators declared before them (reduction loops; at least one over
/// `WARP_ROW` iterations or more), loops that update none, and stores.
fn warp_rows(body: &[KStmt], hint: &Bindings) -> bool {
    let mut declared: Vec<(AccId, DType, kiln_ir::ReduceKind)> = Vec::new();
    let mut long = false;
    for s in body {
        match s {
            KStmt::AccInit { acc, dtype, kind } => declared.push((*acc, *dtype, *kind)),
            KStmt::For { .. } => {
                let updated = reduced_accs(s, &declared);
                if updated.is_empty() {
                    if !updates_none(s) {
                        return false;
                    }
                } else if only_updates(s, &updated) {
                    let (loops, _) = perfect_nest(std::slice::from_ref(s));
                    let row: Size = loops.iter().map(|l| l.1.clone()).product();
                    long |= row.eval(hint).is_some_and(|n| n >= WARP_ROW as i64);
                } else {
                    return false;
                }
            }
            KStmt::Store { .. } | KStmt::ScatterAdd { .. } => {}
            KStmt::AccUpdate { .. } | KStmt::Call(_) => return false,
        }
    }
    long
}

/// The accumulators of `declared` that `s` updates.
pub fn reduced_accs(
    s: &KStmt,
    declared: &[(AccId, DType, kiln_ir::ReduceKind)],
) -> Vec<(AccId, DType, kiln_ir::ReduceKind)> {
    let mut ids = Vec::new();
    s.walk(&mut |s| {
        if let KStmt::AccUpdate { acc, .. } = s {
            ids.push(*acc);
        }
    });
    declared.iter().filter(|(a, ..)| ids.contains(a)).copied().collect()
}

/// Whether every accumulator `s` updates is declared inside it.
fn updates_none(s: &KStmt) -> bool {
    let (mut inner, mut ok) = (Vec::new(), true);
    s.walk(&mut |s| match s {
        KStmt::AccInit { acc, .. } => inner.push(*acc),
        KStmt::AccUpdate { acc, .. } => ok &= inner.contains(acc),
        KStmt::Call(_) => ok = false,
        _ => {}
    });
    ok
}

/// The `vector` width of the innermost loop of the perfect nest `s` starts.
fn innermost_vector(s: &KStmt) -> u32 {
    match s {
        KStmt::For { body, vector, .. } => match body.as_slice() {
            [inner @ KStmt::For { .. }] => innermost_vector(inner),
            _ => *vector,
        },
        _ => 1,
    }
}

/// The loops of the perfect nest that `body` (one `For`) starts, and the
/// innermost body.
fn perfect_nest(mut body: &[KStmt]) -> (Vec<(VarId, Size)>, &[KStmt]) {
    let mut loops = Vec::new();
    while let [KStmt::For { var, extent, body: inner, .. }] = body {
        loops.push((*var, extent.clone()));
        body = inner;
    }
    (loops, body)
}

/// Whether the accumulators `accs` are only updated inside `s`: never read,
/// never declared again.
fn only_updates(s: &KStmt, accs: &[(AccId, DType, kiln_ir::ReduceKind)]) -> bool {
    let ours = |a: &AccId| accs.iter().any(|(b, ..)| b == a);
    let mut ok = true;
    s.walk(&mut |s| match s {
        KStmt::AccInit { acc, .. } => ok &= !ours(acc),
        KStmt::Call(_) => ok = false,
        _ => {}
    });
    ok && !s.any_expr(&|e| matches!(e, KExpr::Acc(a) if ours(a)))
}

/// The most blocks along y and z.
pub const MAX_BLOCKS_YZ: u64 = 65_535;

/// Threads wanted along x, y, z (the grid is enough blocks to hold them,
/// up to a cap per axis: past it a grid-stride loop covers the rest), the
/// block, and shared memory of a mapping.
fn shape_of(plan: &Plan, mapping: &Mapping<'_>) -> ([Size; 3], [u32; 3], u32) {
    let one = || Size::constant(1);
    match mapping {
        Mapping::Grid { loops, lanes, .. } => {
            let total: Size = loops.iter().map(|l| l.1.clone()).product();
            // `lanes` divides the innermost extent, so the total too (were it
            // not to, more threads than needed would find no work: still right).
            let total = total.div_exact(i64::from(*lanes)).unwrap_or_else(|| total.clone());
            ([total, one(), one()], [BLOCK, 1, 1], 0)
        }
        Mapping::WarpRows { loops, .. } => {
            let rows: Size = loops.iter().map(|l| l.1.clone()).product();
            ([rows * 32, one(), one()], [BLOCK, 1, 1], 0)
        }
        Mapping::BlockReduce { accs, .. } => {
            // One slot per warp and accumulator, 8 bytes each.
            let warps = BLOCK / 32;
            ([Size::from(BLOCK), one(), one()], [BLOCK, 1, 1], warps * 8 * accs.len() as u32)
        }
        Mapping::Gemm(RuntimeCall::Gemm { batch, m, n, c, .. }) => {
            let size = plan.buffer(c.buffer).map_or(8, |b| b.dtype.size_bytes() as u32);
            ([n.clone(), m.clone(), batch.clone()], [TILE, TILE, 1], 2 * TILE * TILE * size)
        }
        Mapping::Single(_) => ([one(), one(), one()], [1, 1, 1], 0),
    }
}

/// [`grid_of`] for a launch whose x axis is grid-strided or not.
pub fn grid_for(strided: bool, threads: [u64; 3], block: [u32; 3]) -> [u64; 3] {
    let mut grid = [0; 3];
    for k in 0..3 {
        let blocks = threads[k].div_ceil(u64::from(block[k])).max(1);
        grid[k] = if strided && k == 0 { blocks.min(MAX_BLOCKS) } else { blocks };
    }
    grid
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_ir::kernel::parse_plan;

    fn plan(text: &str) -> kiln_ir::kernel::Plan {
        parse_plan(text).unwrap()
    }

    #[test]
    fn kernels_split_into_launches_by_statement() {
        let p = plan(
            "plan f {
  b0: f32[40] input 0
  b1: f32[4] output 0
  b2: f32[1] output 1
  kernel k {
    for i0 in 0..4 parallel {
      for i1 in 0..10 {
        b0[10*i0 + i1] = const(f32, 1.0)
      }
    }
    a0: f32 = sum
    for i0 in 0..4 {
      for i1 in 0..10 {
        a0 += b0[10*i0 + i1]
      }
    }
    b2[0] = a0
    for i0 in 0..4 parallel {
      a1: f32 = max
      for i1 in 0..10 {
        a1 += b0[10*i0 + i1]
      }
      b1[i0] = a1
    }
  }
}",
        );
        let ls = launches(&p, &p.kernels[0]);
        let names: Vec<_> = ls.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["k_0", "k_1", "k_2"]);
        assert!(matches!(&ls[0].mapping, Mapping::Grid { loops, lanes: 1, .. } if loops.len() == 2));
        assert!(
            matches!(&ls[1].mapping, Mapping::BlockReduce { loops, tail, .. } if loops.len() == 2 && tail.len() == 1)
        );
        assert!(matches!(&ls[2].mapping, Mapping::Grid { loops, body, .. } if loops.len() == 1 && body.len() == 3));
        assert_eq!(ls[0].grid_at(&Bindings::new()), Ok([1, 1, 1]));
        assert_eq!(ls[1].shared_bytes, 8 * 8);
    }

    #[test]
    fn long_rows_take_a_warp_each_and_short_rows_a_thread() {
        let p = plan(
            "plan f {
  b0: f32[400] input 0
  b1: f32[10] output 0
  b2: f32[40] output 1
  kernel k {
    for i0 in 0..10 parallel {
      a0: f32 = sum
      for i1 in 0..40 {
        a0 += b0[40*i0 + i1]
      }
      b1[i0] = a0
    }
    for i0 in 0..40 parallel {
      a0: f32 = sum
      for i1 in 0..10 {
        a0 += b0[i0 + 40*i1]
      }
      b2[i0] = a0
    }
  }
}",
        );
        let ls = launches(&p, &p.kernels[0]);
        assert!(matches!(&ls[0].mapping, Mapping::WarpRows { loops, .. } if loops.len() == 1));
        assert_eq!(
            (ls[0].grid_at(&Bindings::new()), ls[0].block),
            (Ok([2, 1, 1]), [256, 1, 1]),
            "10 rows, 8 warps a block"
        );
        assert!(matches!(&ls[1].mapping, Mapping::Grid { .. }));
    }

    #[test]
    fn a_reduction_that_reads_its_running_value_runs_on_one_thread() {
        let p = plan(
            "plan f {
  b0: f32[4] output 0
  kernel k {
    a0: f32 = sum
    for i0 in 0..4 {
      a0 += const(f32, 1.0)
      b0[i0] = a0
    }
  }
}",
        );
        let ls = launches(&p, &p.kernels[0]);
        assert_eq!(ls.len(), 1);
        assert!(matches!(ls[0].mapping, Mapping::Single(body) if body.len() == 2));
        assert_eq!(ls[0].block, [1, 1, 1]);
    }
}
