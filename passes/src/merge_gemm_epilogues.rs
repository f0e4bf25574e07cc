//! Merges a GEMM with the elementwise kernel after it: a kernel that is one
//! GEMM call of one matrix, followed directly by a kernel that is one
//! parallel loop reading the product only row by row, become one kernel
//! `[gemm; loop]` (named after the loop's kernel), which the CPU backend
//! runs by blocks of rows — the product's rows, then their epilogue, while
//! they are in cache — where it used to run the whole GEMM and then the
//! whole loop.
//!
//! Guarantee: the plan computes the same values. Kernel IR runs a kernel's
//! statements in order, so the merged kernel is the two kernels one after
//! the other; a merge happens only when `ir::kernel::gemm_epilogue` accepts
//! the result, whose conditions make the blockwise order equivalent too.
//! The product is still stored (later kernels may read it).

use kiln_ir::kernel::{KStmt, Kernel, Plan, RuntimeCall, gemm_epilogue};

/// The plan with each GEMM merged with the epilogue loop right after it,
/// and the positions (in `plan`) of the GEMM kernels that were merged with
/// the kernel after them.
pub fn merge_gemm_epilogues(plan: Plan) -> (Plan, Vec<usize>) {
    let mut kernels: Vec<Kernel> = Vec::with_capacity(plan.kernels.len());
    let mut merged_at = Vec::new();
    for (position, kernel) in plan.kernels.into_iter().enumerate() {
        if let Some(previous) = kernels.last_mut()
            && let ([KStmt::Call(RuntimeCall::Gemm { .. })], [KStmt::For { parallel: true, .. }]) =
                (previous.body.as_slice(), kernel.body.as_slice())
        {
            let merged =
                Kernel { name: kernel.name.clone(), body: previous.body.iter().chain(&kernel.body).cloned().collect() };
            if gemm_epilogue(&merged).is_some() {
                *previous = merged;
                merged_at.push(position - 1);
                continue;
            }
        }
        kernels.push(kernel);
    }
    (Plan { kernels, ..plan }, merged_at)
}
