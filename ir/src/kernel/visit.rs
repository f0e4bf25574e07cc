//! One walk over kernel IR: the sub-expressions of an expression, the
//! expressions and nested statements of a statement, and every affine
//! index in either. Analyses and rewrites that look at each node the same
//! way (which buffers a kernel touches, which accumulators it reads, which
//! indices move along a loop) use these instead of matching every variant.

use super::{Affine, KExpr, KStmt, RuntimeCall, Size};

/// The direct sub-expressions of an expression, in evaluation order, as
/// `&` or (with `mut`) `&mut` references: one body for both.
macro_rules! children {
    ($e:expr $(, $m:ident)?) => {
        match $e {
            KExpr::Gather { index: x, .. } | KExpr::RandomBits { key: x, .. } => vec![&$($m)? **x],
            KExpr::Unary(_, x) | KExpr::Cast(_, x) => vec![&$($m)? **x],
            KExpr::Binary(_, a, b) | KExpr::Compare(_, a, b) => vec![&$($m)? **a, &$($m)? **b],
            KExpr::Select(c, a, b) => vec![&$($m)? **c, &$($m)? **a, &$($m)? **b],
            KExpr::Const { .. } | KExpr::Index { .. } | KExpr::Load { .. } | KExpr::Acc(_) => Vec::new(),
        }
    };
}

/// The affine indices of an expression itself, as `&` or `&mut`.
macro_rules! own_affines {
    ($e:expr $(, $m:ident)?) => {
        match $e {
            KExpr::Index { index, .. } | KExpr::Load { index, .. } => vec![&$($m)? *index],
            KExpr::Gather { base, .. } => vec![&$($m)? *base],
            KExpr::RandomBits { counter, .. } => vec![&$($m)? *counter],
            _ => Vec::new(),
        }
    };
}

impl KExpr {
    /// The direct sub-expressions, in evaluation order.
    pub fn children(&self) -> Vec<&KExpr> {
        children!(self)
    }

    /// The direct sub-expressions, mutably.
    pub fn children_mut(&mut self) -> Vec<&mut KExpr> {
        children!(self, mut)
    }

    /// Calls `visit` on this expression and every sub-expression, parents
    /// before children.
    pub fn walk<'e>(&'e self, visit: &mut impl FnMut(&'e KExpr)) {
        visit(self);
        for c in self.children() {
            c.walk(visit);
        }
    }

    /// Whether `test` holds for this expression or any sub-expression.
    pub fn any(&self, test: &impl Fn(&KExpr) -> bool) -> bool {
        test(self) || self.children().into_iter().any(|c| c.any(test))
    }

    /// The affine indices of this expression alone (not of its children).
    pub fn own_affines(&self) -> Vec<&Affine> {
        own_affines!(self)
    }

    /// The affine indices of this expression alone, mutably.
    pub fn own_affines_mut(&mut self) -> Vec<&mut Affine> {
        own_affines!(self, mut)
    }

    /// Calls `visit` on every affine index in this expression and its
    /// sub-expressions.
    pub fn for_each_affine_mut(&mut self, visit: &mut impl FnMut(&mut Affine)) {
        self.own_affines_mut().into_iter().for_each(&mut *visit);
        for c in self.children_mut() {
            c.for_each_affine_mut(visit);
        }
    }
}

impl KStmt {
    /// The expressions this statement evaluates itself (a loop's body is
    /// not included).
    pub fn exprs(&self) -> Vec<&KExpr> {
        match self {
            KStmt::Store { value, .. } | KStmt::AccUpdate { value, .. } => vec![value],
            KStmt::ScatterAdd { index, value, .. } => vec![index, value],
            KStmt::For { .. } | KStmt::AccInit { .. } | KStmt::Call(_) => Vec::new(),
        }
    }

    /// The statements directly inside this one (a loop's body).
    pub fn body(&self) -> &[KStmt] {
        match self {
            KStmt::For { body, .. } => body,
            _ => &[],
        }
    }

    /// Calls `visit` on this statement and every statement nested in it,
    /// outer before inner.
    pub fn walk<'s>(&'s self, visit: &mut impl FnMut(&'s KStmt)) {
        visit(self);
        for s in self.body() {
            s.walk(visit);
        }
    }

    /// Calls `visit` on every expression (and sub-expression) evaluated in
    /// this statement or a nested one.
    pub fn walk_exprs<'s>(&'s self, visit: &mut impl FnMut(&'s KExpr)) {
        self.walk(&mut |s: &'s KStmt| s.exprs().into_iter().for_each(|e| e.walk(visit)));
    }

    /// Whether `test` holds for some expression evaluated in this statement
    /// or a nested one.
    pub fn any_expr(&self, test: &impl Fn(&KExpr) -> bool) -> bool {
        self.exprs().into_iter().any(|e| e.any(test)) || self.body().iter().any(|s| s.any_expr(test))
    }

    /// The affine indices this statement stores at itself (a store's
    /// index, a scatter's base).
    pub fn own_affines(&self) -> Vec<&Affine> {
        match self {
            KStmt::Store { index, .. } => vec![index],
            KStmt::ScatterAdd { base, .. } => vec![base],
            _ => Vec::new(),
        }
    }

    /// Every affine index of this statement and of the statements and
    /// expressions in it, statements' before their expressions'.
    pub fn affines(&self) -> Vec<&Affine> {
        let mut out = Vec::new();
        self.walk(&mut |s| {
            out.extend(s.own_affines());
            for e in s.exprs() {
                e.walk(&mut |e| out.extend(e.own_affines()));
            }
        });
        out
    }

    /// Calls `visit` on every affine index of this statement and of the
    /// statements and expressions in it.
    pub fn for_each_affine_mut(&mut self, visit: &mut impl FnMut(&mut Affine)) {
        match self {
            KStmt::For { body, .. } => body.iter_mut().for_each(|s| s.for_each_affine_mut(visit)),
            KStmt::Store { index, value, .. } => {
                visit(index);
                value.for_each_affine_mut(visit);
            }
            KStmt::ScatterAdd { base, index, value, .. } => {
                visit(base);
                index.for_each_affine_mut(visit);
                value.for_each_affine_mut(visit);
            }
            KStmt::AccUpdate { value, .. } => value.for_each_affine_mut(visit),
            KStmt::AccInit { .. } | KStmt::Call(_) => {}
        }
    }

    /// Calls `visit` on every size in this statement and the statements and
    /// expressions in it: extents, coefficients and constants of affine
    /// indices, strides and bounds of gathers and scatters, GEMM dimensions
    /// and matrix layouts.
    pub fn for_each_size_mut(&mut self, visit: &mut impl FnMut(&mut Size)) {
        self.for_each_affine_mut(&mut |a: &mut Affine| {
            visit(&mut a.constant);
            a.terms.iter_mut().for_each(|t| visit(&mut t.1));
            a.terms.retain(|t| !t.1.is(0));
        });
        let mut gathers = |e: &mut KExpr| {
            if let KExpr::Gather { stride, bound, .. } = e {
                visit(stride);
                visit(bound);
            }
        };
        self.for_each_expr_mut(&mut gathers);
        match self {
            KStmt::For { extent, body, .. } => {
                visit(extent);
                body.iter_mut().for_each(|s| s.for_each_size_mut(visit));
            }
            KStmt::ScatterAdd { stride, bound, .. } => {
                visit(stride);
                visit(bound);
            }
            KStmt::Call(RuntimeCall::Gemm { batch, m, n, k, a, b, c }) => {
                for s in [batch, m, n, k] {
                    visit(s);
                }
                for mat in [a, b, c] {
                    for s in [&mut mat.offset, &mut mat.row_stride, &mut mat.batch_stride, &mut mat.col_stride] {
                        visit(s);
                    }
                }
            }
            KStmt::Store { .. } | KStmt::AccInit { .. } | KStmt::AccUpdate { .. } => {}
        }
    }

    /// Calls `visit` on every expression this statement evaluates itself
    /// and their sub-expressions (not on a loop's body).
    pub fn for_each_expr_mut(&mut self, visit: &mut impl FnMut(&mut KExpr)) {
        fn each(e: &mut KExpr, visit: &mut impl FnMut(&mut KExpr)) {
            visit(e);
            for c in e.children_mut() {
                each(c, visit);
            }
        }
        match self {
            KStmt::Store { value, .. } | KStmt::AccUpdate { value, .. } => each(value, visit),
            KStmt::ScatterAdd { index, value, .. } => {
                each(index, visit);
                each(value, visit);
            }
            KStmt::For { .. } | KStmt::AccInit { .. } | KStmt::Call(_) => {}
        }
    }
}
