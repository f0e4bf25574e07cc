//! Parts of a kernel: the functions the JIT compiles it to, run in order.
//!
//! A kernel whose body is several top-level statements (a convolution's
//! zero fill, padded copy, im2col and GEMM; a pad's fill and copy) would
//! run on one thread as one function, since only a kernel that is one
//! parallel loop is split across threads (`kernel::split_loop`). Each
//! top-level parallel loop that reads no accumulator declared outside it
//! becomes a part of its own, which the runtime splits like a one-loop
//! kernel; the statements between such loops are parts run as they are.
//!
//! Guarantee: the parts' bodies, concatenated in order, are the kernel's
//! body, and no accumulator is declared in one part and used in another,
//! so running the parts one after another is running the kernel. A GEMM
//! with its epilogue (`gemm_epilogue`), split by rows, stays one part.

use kiln_ir::kernel::{AccId, KExpr, KStmt, Kernel, gemm_epilogue};

/// The parts of `kernel`, in order, each named as the kernel.
pub fn parts(kernel: &Kernel) -> Vec<Kernel> {
    if kernel.body.len() <= 1 || gemm_epilogue(kernel).is_some() {
        return vec![kernel.clone()];
    }
    let mut declared = Vec::new();
    kernel.body.iter().for_each(|s| declared_accs(s, &mut declared));
    let mut groups: Vec<Vec<KStmt>> = vec![Vec::new()];
    for s in &kernel.body {
        let alone = matches!(s, KStmt::For { parallel: true, .. }) && !uses_any(s, &declared_outside(s, &declared));
        if alone {
            groups.push(vec![s.clone()]);
            groups.push(Vec::new());
        } else if let Some(last) = groups.last_mut() {
            last.push(s.clone());
        }
    }
    groups.into_iter().filter(|g| !g.is_empty()).map(|body| Kernel { name: kernel.name.clone(), body }).collect()
}

/// The accumulators declared anywhere in `s`.
fn declared_accs(s: &KStmt, out: &mut Vec<AccId>) {
    s.walk(&mut |s| {
        if let KStmt::AccInit { acc, .. } = s {
            out.push(*acc);
        }
    });
}

/// The accumulators of `all` not declared inside `s`.
fn declared_outside(s: &KStmt, all: &[AccId]) -> Vec<AccId> {
    let mut inside = Vec::new();
    declared_accs(s, &mut inside);
    all.iter().copied().filter(|a| !inside.contains(a)).collect()
}

/// Whether `s` reads or updates any of `accs`.
fn uses_any(s: &KStmt, accs: &[AccId]) -> bool {
    let mut updates = false;
    s.walk(&mut |s| match s {
        KStmt::AccInit { acc, .. } | KStmt::AccUpdate { acc, .. } => updates |= accs.contains(acc),
        _ => {}
    });
    updates || s.any_expr(&|e| matches!(e, KExpr::Acc(a) if accs.contains(a)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_ir::kernel::parse_plan;

    fn kernel_of(text: &str) -> Kernel {
        parse_plan(text).unwrap().kernels.remove(0)
    }

    #[test]
    fn parallel_loops_become_parts_and_reductions_stay_whole() {
        let k = kernel_of(
            "plan p {
  b0: f32[8] input 0
  b1: f32[8] output 0
  b2: f32[1] output 1

  kernel k0 {
    for i0 in 0..8 parallel {
      b1[i0] = b0[i0]
    }
    a0: f32 = sum
    for i1 in 0..8 parallel {
      a0 += b0[i1]
    }
    b2[0] = a0
    for i2 in 0..8 parallel vector 4 {
      b1[i2] = add(b1[i2], const(f32, 1.0))
    }
  }
}
",
        );
        let parts = parts(&k);
        let sizes: Vec<usize> = parts.iter().map(|p| p.body.len()).collect();
        assert_eq!(sizes, vec![1, 3, 1], "{parts:?}");
        assert!(parts.iter().all(|p| p.name == "k0"));
        let joined: Vec<KStmt> = parts.iter().flat_map(|p| p.body.clone()).collect();
        assert_eq!(joined, k.body, "the parts are the body, in order");
    }
}
