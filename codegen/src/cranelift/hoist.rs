//! Loop-invariant index arithmetic: before a loop starts, every affine
//! index its body uses is split into the part that only depends on loops
//! already running (and the constant) and the part that moves with the new
//! loop and those inside it. The first part is computed once, in the block
//! before the loop, and the body adds only the moving terms.
//!
//! Guarantee: an index computed with a hoisted part equals the index
//! computed term by term; hoisted values are only used inside the loop they
//! were computed before (their block dominates it).

use std::collections::{BTreeSet, HashMap};

use cranelift_codegen::ir::{InstBuilder, Value};
use kiln_ir::kernel::{Affine, KStmt, VarId};

use super::kernel::{Gen, KernelBuilder};

/// The hoisted index parts of one running loop.
#[derive(Default)]
pub struct Hoisted {
    /// Variables bound when the loop started: the ones its parts use.
    outer: BTreeSet<VarId>,
    values: HashMap<Affine, Value>,
}

/// `a` without the terms of variables outside `keep`.
fn restrict(a: &Affine, keep: &BTreeSet<VarId>) -> Affine {
    Affine { constant: a.constant.clone(), terms: a.terms.iter().filter(|t| keep.contains(&t.0)).cloned().collect() }
}

impl KernelBuilder<'_, '_> {
    /// Called in the block before a loop over `body` starts (its variable
    /// not yet bound): computes the invariant part of each index the body
    /// uses that has one with at least one term.
    pub fn enter_loop(&mut self, body: &[KStmt]) -> Gen<()> {
        let outer = self.bound_vars();
        let mut affines = Vec::new();
        body.iter().for_each(|s| affines.extend(s.affines()));
        let mut values = HashMap::new();
        for a in affines {
            let part = restrict(a, &outer);
            if part.terms.is_empty() || values.contains_key(&part) {
                continue;
            }
            let v = self.affine(&part)?;
            values.insert(part, v);
        }
        self.hoisted.push(Hoisted { outer, values });
        Ok(())
    }

    /// Called after the loop `enter_loop` prepared has ended.
    pub fn leave_loop(&mut self) {
        self.hoisted.pop();
    }

    /// The value of an affine index, as an i64: the innermost hoisted part
    /// of it plus its remaining terms.
    pub fn affine(&mut self, a: &Affine) -> Gen<Value> {
        let found = self.hoisted.iter().rev().find_map(|level| {
            let part = restrict(a, &level.outer);
            level.values.get(&part).map(|&v| (v, level.outer.clone()))
        });
        let (mut sum, done) = match found {
            Some((v, outer)) => (v, outer),
            None => (self.size(&a.constant), BTreeSet::new()),
        };
        for (v, c) in a.terms.iter().filter(|t| !done.contains(&t.0)) {
            let value = self.var_value(*v)?;
            let term = self.scaled(value, c);
            sum = self.b.ins().iadd(sum, term);
        }
        Ok(sum)
    }
}
