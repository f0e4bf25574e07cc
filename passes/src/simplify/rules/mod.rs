//! The rewrite rules, one file per theme. Every rule has a test in
//! `passes/tests/rules.rs` that evaluates both sides on random tensors.

pub mod algebra;
pub mod fold;
pub mod layout;
pub mod matmul;
pub mod reductions;

use super::rule::Rule;

/// Every rule, in a fixed order.
pub fn all() -> Vec<Rule> {
    let mut rules = algebra::rules();
    rules.extend(layout::rules());
    rules.extend(reductions::rules());
    rules.extend(matmul::rules());
    rules.extend(fold::rules());
    rules
}
