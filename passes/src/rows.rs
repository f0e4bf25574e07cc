//! Which sizes index independent rows: whether a function computes the
//! rows along a symbolic size independently of each other, so that running
//! it on fewer rows gives the first rows of the full result. Libraries
//! built ahead of time use it to accept any batch size up to the one they
//! were compiled for.
//!
//! Guarantee (sufficient, not necessary): the answer is yes only when the
//! size is the leading axis of every input and output that has it, every
//! output has it, and no node drops it from the type of what it computes
//! (a reduction over the batch, a product contracting it, a slice or
//! reshape of it), so every value's row `i` depends only on the inputs'
//! rows `i` and on values without the size.

use kiln_ir::{Dim, Function, TensorType};

/// Whether `f` computes the rows of size `symbol` independently.
pub fn rows_independent(f: &Function, symbol: &str) -> bool {
    let has = |ty: &TensorType| ty.shape.0.iter().any(|d| matches!(d, Dim::Sym(x) if x.0 == symbol));
    let leading_only = |ty: &TensorType| {
        ty.shape.0.iter().enumerate().all(|(k, d)| !matches!(d, Dim::Sym(x) if x.0 == symbol) || k == 0)
    };
    let inputs_ok = f.inputs.iter().all(|i| leading_only(&i.ty));
    // Every value holds the size as its leading axis or not at all: a
    // reshape or permute that moves it mixes rows.
    let nodes_ok = f.graph.nodes().all(|(_, node)| leading_only(&node.ty));
    let outputs_ok = nodes_ok && f.output_types().iter().all(|t| has(t) && leading_only(t));
    let kept = f.graph.nodes().all(|(_, node)| has(&node.ty) || !node.args.iter().any(|a| has(&f.graph.node(*a).ty)));
    inputs_ok && outputs_ok && kept
}

#[cfg(test)]
mod tests {
    use super::rows_independent;

    fn function(text: &str) -> kiln_ir::Function {
        kiln_ir::parse_module(text).unwrap().functions.remove(0)
    }

    #[test]
    fn rowwise_functions_have_independent_rows() {
        let f = function(
            "func f(x: f32[N, 3], w: f32[3, 2]) -> (f32[N, 2]) {
  %0: f32[N, 3] = input 0
  %1: f32[3, 2] = input 1
  %2: f32[N, 2] = matmul %0, %1
  %3: f32[N, 2] = exp %2
  return %3
}
",
        );
        assert!(rows_independent(&f, "N"));
    }

    #[test]
    fn moving_the_size_from_the_leading_axis_mixes_rows() {
        let f = function(
            "func f(x: f32[N, 4]) -> (f32[N, 4]) {
  %0: f32[N, 4] = input 0
  %1: f32[4, N] = reshape %0
  %2: f32[N, 4] = permute %1 perm=[1, 0]
  return %2
}
",
        );
        assert!(!rows_independent(&f, "N"));
    }

    #[test]
    fn a_reduction_over_the_rows_mixes_them() {
        let f = function(
            "func f(x: f32[N, 3]) -> (f32[]) {
  %0: f32[N, 3] = input 0
  %1: f32[] = reduce_sum %0 axes=[0, 1] keepdims=false
  return %1
}
",
        );
        assert!(!rows_independent(&f, "N"));
        let g = function(
            "func f(x: f32[N, 3]) -> (f32[3, N]) {
  %0: f32[N, 3] = input 0
  %1: f32[3, N] = permute %0 perm=[1, 0]
  return %1
}
",
        );
        assert!(!rows_independent(&g, "N"), "the size must lead every output");
    }
}
