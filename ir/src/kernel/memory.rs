//! Buffer reuse by liveness: every buffer of a plan gets a byte offset in one
//! arena, so a compiled function allocates once and intermediates whose
//! lifetimes do not overlap share memory.
//!
//! Guarantee: every offset is a multiple of [`ALIGN`] bytes, every buffer's
//! bytes lie inside the arena, and two buffers whose lifetimes overlap never
//! share a byte. A lifetime runs from the first kernel that uses a buffer
//! to the last one, inclusive; an input or parameter lives from before the
//! first kernel (it is written before the run), an output until after the
//! last (it is read after the run), and a buffer no kernel touches for the
//! whole run. Two buffers may share memory only when one's last kernel
//! comes strictly before the other's first, so no kernel ever reads one
//! while writing the other through the same bytes.
//!
//! Buffer lengths are sizes of the plan's symbols, so the layout is made
//! for one binding of them (a batch size): a backend lays out the arena
//! again when the binding changes.
//!
//! Nothing here assumes a buffer starts zeroed: lowering writes every
//! element of a temporary before reading it.

use super::{BufferRole, Plan};
use crate::types::Bindings;

/// The alignment of every buffer in the arena, in bytes.
pub const ALIGN: u64 = 64;

/// Where each buffer lives in the arena.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArenaLayout {
    /// Byte offset of each buffer, indexed like `Plan::buffers`.
    pub offsets: Vec<u64>,
    /// The arena's size in bytes.
    pub bytes: u64,
}

impl ArenaLayout {
    /// What the buffers would take without reuse, in bytes (each rounded up
    /// to the alignment): the figure the layout is measured against.
    pub fn unshared_bytes(plan: &Plan, bindings: &Bindings) -> Result<u64, String> {
        Ok(padded_sizes(plan, bindings)?.iter().sum())
    }
}

/// Each buffer's bytes at `bindings`, rounded up to the alignment.
fn padded_sizes(plan: &Plan, bindings: &Bindings) -> Result<Vec<u64>, String> {
    plan.buffers
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let len = b.len.eval(bindings).and_then(|n| u64::try_from(n).ok());
            len.and_then(|n| n.checked_mul(b.dtype.size_bytes() as u64))
                .filter(|&bytes| u128::from(bytes) <= crate::MAX_TENSOR_BYTES)
                .map(padded)
                .ok_or_else(|| {
                    format!("buffer b{i} of {} elements has no size a tensor may have at these sizes", b.len)
                })
        })
        .collect()
}

fn padded(bytes: u64) -> u64 {
    bytes.div_ceil(ALIGN).max(1) * ALIGN
}

/// When each buffer is live, by the rules of the module doc: the first and
/// last kernel, inclusive (the kernel count past the last one for an output).
pub fn live_spans(plan: &Plan) -> Vec<(usize, usize)> {
    let end = plan.kernels.len();
    plan.lifetimes()
        .into_iter()
        .zip(&plan.buffers)
        .map(|(span, decl)| {
            let (first, last) = span.unwrap_or((0, end));
            match decl.role {
                BufferRole::Input(_) | BufferRole::Param(_) => (0, last),
                BufferRole::Output(_) => (first, end),
                BufferRole::Temp => (first, last),
            }
        })
        .collect()
}

/// Lays out the plan's buffers at `bindings`: biggest first, each at the
/// lowest aligned offset that no buffer with an overlapping lifetime already
/// occupies. An error when a buffer's length has no value there (an unbound
/// symbol, or more than a tensor may hold).
pub fn arena_layout(plan: &Plan, bindings: &Bindings) -> Result<ArenaLayout, String> {
    let spans = live_spans(plan);
    let sizes = padded_sizes(plan, bindings)?;
    let mut order: Vec<usize> = (0..plan.buffers.len()).collect();
    order.sort_by_key(|&b| (std::cmp::Reverse(sizes[b]), b));
    let mut offsets = vec![0u64; plan.buffers.len()];
    let mut placed: Vec<usize> = Vec::new();
    let mut bytes = 0;
    for b in order {
        let (first, last) = spans[b];
        // Occupied address ranges of live-at-the-same-time buffers, by start.
        let mut busy: Vec<(u64, u64)> = placed
            .iter()
            .filter(|&&p| spans[p].0 <= last && first <= spans[p].1)
            .map(|&p| (offsets[p], offsets[p] + sizes[p]))
            .collect();
        busy.sort_unstable();
        let mut offset = 0;
        for (start, stop) in busy {
            if offset + sizes[b] <= start {
                break;
            }
            offset = offset.max(stop);
        }
        offsets[b] = offset;
        bytes = bytes.max(offset + sizes[b]);
        placed.push(b);
    }
    Ok(ArenaLayout { offsets, bytes })
}
