//! Sizes: what a plan's loop extents, buffer lengths, strides, offsets and
//! GEMM dimensions are. A [`Size`] is a polynomial with integer
//! coefficients in the function's size symbols (`784*N`, `N*T + 1`, `10`),
//! so one plan serves every binding of its symbols: a backend evaluates it
//! at run time, or substitutes a binding ([`Size::substitute`]) when it
//! wants constants.
//!
//! Sizes are compared by proof, not by evaluation at one binding:
//! [`Size::is_nonnegative`] holds when the polynomial is at least zero for
//! every value of its symbols at or above their lower bounds (each symbol
//! `s` is written `lo + t` with `t >= 0`; if every coefficient of the
//! result is non-negative, so is the value). The test is sufficient, not
//! necessary: a size it cannot prove is treated as possibly negative.
//!
//! Arithmetic saturates at the ends of `i64` instead of wrapping, so an
//! overflowing size is never silently small (lowering refuses sizes beyond
//! `MAX_TENSOR_BYTES` long before that).

use std::collections::BTreeMap;
use std::fmt;
use std::ops::{Add, Mul, Neg, Sub};

use crate::types::{Bindings, Symbol};

/// A product of symbols, ascending, a symbol repeated for each power; the
/// empty product is 1 (the constant term, kept apart).
pub type Monomial = Vec<Symbol>;

/// A polynomial in size symbols: `constant + sum(coefficient * monomial)`,
/// terms sorted by monomial with non-zero coefficients, so that equal sizes
/// are equal values.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Size {
    constant: i64,
    terms: Vec<(Monomial, i64)>,
}

impl Size {
    /// The constant `c`.
    pub const fn constant(c: i64) -> Size {
        Size { constant: c, terms: Vec::new() }
    }

    /// The symbol `s` itself.
    pub fn symbol(s: Symbol) -> Size {
        Size { constant: 0, terms: vec![(vec![s], 1)] }
    }

    /// The value, when the size has no symbols.
    pub fn as_const(&self) -> Option<i64> {
        self.terms.is_empty().then_some(self.constant)
    }

    /// Whether the size is the constant `c`.
    pub fn is(&self, c: i64) -> bool {
        self.terms.is_empty() && self.constant == c
    }

    /// The constant term.
    pub fn constant_term(&self) -> i64 {
        self.constant
    }

    /// The non-constant terms: each monomial and its coefficient.
    pub fn terms(&self) -> &[(Monomial, i64)] {
        &self.terms
    }

    /// The symbols the size mentions, ascending, each once.
    pub fn symbols(&self) -> Vec<Symbol> {
        let mut out: Vec<Symbol> = self.terms.iter().flat_map(|(m, _)| m.iter().cloned()).collect();
        out.sort();
        out.dedup();
        out
    }

    /// The value at `bindings`: `None` when a symbol is unbound or the value
    /// does not fit an `i64`.
    pub fn eval(&self, bindings: &Bindings) -> Option<i64> {
        self.eval_with(&|s| bindings.get(s).and_then(|&v| i64::try_from(v).ok()))
    }

    /// The value with each symbol's value given by `value`.
    pub fn eval_with(&self, value: &dyn Fn(&Symbol) -> Option<i64>) -> Option<i64> {
        let mut sum = self.constant;
        for (m, c) in &self.terms {
            let mut product = *c;
            for s in m {
                product = product.checked_mul(value(s)?)?;
            }
            sum = sum.checked_add(product)?;
        }
        Some(sum)
    }

    /// The size with the bound symbols replaced by their values (the others
    /// stay symbols).
    pub fn substitute(&self, bindings: &Bindings) -> Size {
        let mut out = Size::constant(self.constant);
        for (m, c) in &self.terms {
            let mut term = Size::constant(*c);
            for s in m {
                term = match bindings.get(s) {
                    Some(&v) => term * Size::from(v),
                    None => term * Size::symbol(s.clone()),
                };
            }
            out = out + term;
        }
        out
    }

    /// Whether the size is provably at least 0 for every value of each
    /// symbol `s` at or above `lower(s)` (see the module doc).
    ///
    /// A coefficient at either end of `i64` may be a saturated one, and any
    /// overflow while expanding is a failure to prove: arithmetic that
    /// saturated never passes for a proof.
    pub fn is_nonnegative(&self, lower: &dyn Fn(&Symbol) -> i64) -> bool {
        let saturated = |c: i64| c == i64::MAX || c == i64::MIN;
        if saturated(self.constant) || self.terms.iter().any(|(_, c)| saturated(*c)) {
            return false;
        }
        if self.terms.is_empty() {
            return self.constant >= 0;
        }
        // Each symbol s becomes lo + t with t >= 0: the coefficient of each
        // monomial in the t's, in i128 with every operation checked.
        let mut shifted: BTreeMap<Monomial, i128> = BTreeMap::new();
        shifted.insert(Vec::new(), i128::from(self.constant));
        for (m, c) in &self.terms {
            // The product of (lo_s + t_s) over the monomial's symbols.
            let mut expansion: BTreeMap<Monomial, i128> = BTreeMap::from([(Vec::new(), i128::from(*c))]);
            for s in m {
                let lo = i128::from(lower(s));
                let mut next: BTreeMap<Monomial, i128> = BTreeMap::new();
                for (mono, coefficient) in expansion {
                    let Some(times_lo) = coefficient.checked_mul(lo) else { return false };
                    let slot = next.entry(mono.clone()).or_insert(0);
                    let Some(sum) = slot.checked_add(times_lo) else { return false };
                    *slot = sum;
                    let mut with_t = mono;
                    with_t.push(s.clone());
                    with_t.sort();
                    let slot = next.entry(with_t).or_insert(0);
                    let Some(sum) = slot.checked_add(coefficient) else { return false };
                    *slot = sum;
                }
                expansion = next;
            }
            for (mono, coefficient) in expansion {
                let slot = shifted.entry(mono).or_insert(0);
                let Some(sum) = slot.checked_add(coefficient) else { return false };
                *slot = sum;
            }
        }
        shifted.values().all(|c| *c >= 0)
    }

    /// Whether `self <= other` provably (see [`Size::is_nonnegative`]).
    pub fn provably_le(&self, other: &Size, lower: &dyn Fn(&Symbol) -> i64) -> bool {
        (other.clone() - self.clone()).is_nonnegative(lower)
    }

    /// `self / k` when `k` divides every coefficient (so it divides the
    /// value at every binding), else `None`.
    pub fn div_exact(&self, k: i64) -> Option<Size> {
        if k == 0 || self.constant % k != 0 || self.terms.iter().any(|(_, c)| c % k != 0) {
            return None;
        }
        let terms = self.terms.iter().map(|(m, c)| (m.clone(), c / k)).collect();
        Some(Size { constant: self.constant / k, terms })
    }

    /// The size times the constant `k`.
    pub fn scale(&self, k: i64) -> Size {
        self.clone() * Size::constant(k)
    }

    fn add_term(&mut self, m: Monomial, c: i64) {
        if c == 0 {
            return;
        }
        if m.is_empty() {
            self.constant = self.constant.saturating_add(c);
            return;
        }
        match self.terms.binary_search_by(|t| t.0.cmp(&m)) {
            Ok(i) => {
                self.terms[i].1 = self.terms[i].1.saturating_add(c);
                if self.terms[i].1 == 0 {
                    self.terms.remove(i);
                }
            }
            Err(i) => self.terms.insert(i, (m, c)),
        }
    }

    /// Every term, the constant first (as the empty monomial).
    fn all_terms(&self) -> impl Iterator<Item = (Monomial, i64)> + '_ {
        std::iter::once((Vec::new(), self.constant)).chain(self.terms.iter().cloned())
    }
}

impl From<i64> for Size {
    fn from(c: i64) -> Size {
        Size::constant(c)
    }
}

impl From<u64> for Size {
    fn from(c: u64) -> Size {
        Size::constant(i64::try_from(c).unwrap_or(i64::MAX))
    }
}

impl From<i32> for Size {
    fn from(c: i32) -> Size {
        Size::constant(i64::from(c))
    }
}

impl From<u32> for Size {
    fn from(c: u32) -> Size {
        Size::constant(i64::from(c))
    }
}

impl From<usize> for Size {
    fn from(c: usize) -> Size {
        Size::constant(i64::try_from(c).unwrap_or(i64::MAX))
    }
}

impl From<&Size> for Size {
    fn from(s: &Size) -> Size {
        s.clone()
    }
}

impl PartialEq<i64> for Size {
    fn eq(&self, c: &i64) -> bool {
        self.is(*c)
    }
}

impl Add for Size {
    type Output = Size;
    fn add(mut self, other: Size) -> Size {
        for (m, c) in other.all_terms() {
            self.add_term(m, c);
        }
        self
    }
}

impl Sub for Size {
    type Output = Size;
    fn sub(self, other: Size) -> Size {
        self + (-other)
    }
}

impl Neg for Size {
    type Output = Size;
    fn neg(self) -> Size {
        Size {
            constant: self.constant.saturating_neg(),
            terms: self.terms.into_iter().map(|(m, c)| (m, c.saturating_neg())).collect(),
        }
    }
}

impl Mul for Size {
    type Output = Size;
    fn mul(self, other: Size) -> Size {
        if let Some(k) = other.as_const() {
            let mut out = Size::constant(self.constant.saturating_mul(k));
            if k != 0 {
                out.terms = self.terms.into_iter().map(|(m, c)| (m, c.saturating_mul(k))).collect();
                out.terms.retain(|t| t.1 != 0);
            }
            return out;
        }
        let mut out = Size::default();
        for (ma, ca) in self.all_terms() {
            for (mb, cb) in other.all_terms() {
                let mut m: Monomial = ma.iter().chain(&mb).cloned().collect();
                m.sort();
                out.add_term(m, ca.saturating_mul(cb));
            }
        }
        out
    }
}

impl Add<i64> for Size {
    type Output = Size;
    fn add(self, c: i64) -> Size {
        self + Size::constant(c)
    }
}

impl Mul<i64> for Size {
    type Output = Size;
    fn mul(self, c: i64) -> Size {
        self * Size::constant(c)
    }
}

impl std::iter::Sum for Size {
    fn sum<I: Iterator<Item = Size>>(iter: I) -> Size {
        iter.fold(Size::default(), |a, b| a + b)
    }
}

impl std::iter::Product for Size {
    fn product<I: Iterator<Item = Size>>(iter: I) -> Size {
        iter.fold(Size::constant(1), |a, b| a * b)
    }
}

/// A monomial as text: `N`, `N*T`, `N*N`.
fn write_monomial(f: &mut fmt::Formatter<'_>, m: &Monomial) -> fmt::Result {
    for (k, s) in m.iter().enumerate() {
        if k > 0 {
            f.write_str("*")?;
        }
        write!(f, "{s}")?;
    }
    Ok(())
}

/// `784*N + 3`, `N*T - 1`, `-N`, `0`: the highest-degree terms first, the
/// constant last; the kernel IR parser reads it back.
impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ordered: Vec<&(Monomial, i64)> = self.terms.iter().collect();
        ordered.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
        let mut first = true;
        for (m, c) in ordered {
            match (first, *c < 0) {
                (true, false) => {}
                (true, true) => f.write_str("-")?,
                (false, false) => f.write_str(" + ")?,
                (false, true) => f.write_str(" - ")?,
            }
            if c.unsigned_abs() != 1 {
                write!(f, "{}*", c.unsigned_abs())?;
            }
            write_monomial(f, m)?;
            first = false;
        }
        match (first, self.constant) {
            (true, c) => write!(f, "{c}"),
            (false, 0) => Ok(()),
            (false, c) if c < 0 => write!(f, " - {}", c.unsigned_abs()),
            (false, c) => write!(f, " + {c}"),
        }
    }
}

/// A size symbol of a plan: its name, the least value it may take (the
/// verifier proves every access in bounds for all values from there up),
/// and the value size-dependent choices were taken at.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SizeSymbol {
    pub symbol: Symbol,
    pub min: u64,
    pub hint: u64,
}

/// The lower bound of each symbol of `symbols` (1 for one not declared: a
/// dimension is never empty).
pub fn lower_bounds(symbols: &[SizeSymbol]) -> impl Fn(&Symbol) -> i64 + '_ {
    move |s| symbols.iter().find(|d| &d.symbol == s).map_or(1, |d| i64::try_from(d.min).unwrap_or(i64::MAX))
}

/// The hints of `symbols`, as bindings.
pub fn hints(symbols: &[SizeSymbol]) -> Bindings {
    symbols.iter().map(|d| (d.symbol.clone(), d.hint)).collect::<BTreeMap<_, _>>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n() -> Size {
        Size::symbol(Symbol::new("N"))
    }

    fn t() -> Size {
        Size::symbol(Symbol::new("T"))
    }

    #[test]
    fn arithmetic_is_canonical() {
        let a = n() * 784 + 3;
        let b = Size::constant(3) + Size::constant(784) * n();
        assert_eq!(a, b);
        assert_eq!((n() - n()), Size::constant(0));
        assert_eq!((n() + 1) * (n() - Size::constant(1)), n() * n() - Size::constant(1));
        assert_eq!(format!("{}", n() * 784 + 3), "784*N + 3");
        assert_eq!(format!("{}", n() * t() - n() + (-2)), "N*T - N - 2");
        assert_eq!(format!("{}", -n()), "-N");
        assert_eq!(format!("{}", Size::constant(0)), "0");
        assert_eq!(format!("{}", n() * n() * 2 + t()), "2*N*N + T");
    }

    #[test]
    fn exact_division_needs_every_coefficient_divisible() {
        assert_eq!((n() * 784 + 8).div_exact(4), Some(n() * 196 + 2));
        assert_eq!(n().div_exact(4), None, "N is not a multiple of 4 at every binding");
        assert_eq!((n() * 4 + 2).div_exact(4), None);
        assert_eq!(Size::constant(12).div_exact(0), None);
    }

    #[test]
    fn evaluation_and_substitution_agree() {
        let s = n() * t() * 3 - n() + 7;
        let bindings: Bindings = [(Symbol::new("N"), 5), (Symbol::new("T"), 9)].into_iter().collect();
        assert_eq!(s.eval(&bindings), Some(3 * 45 - 5 + 7));
        assert_eq!(s.substitute(&bindings).as_const(), Some(3 * 45 - 5 + 7));
        let only_n: Bindings = [(Symbol::new("N"), 5)].into_iter().collect();
        assert_eq!(s.substitute(&only_n), t() * 15 + 2);
        assert_eq!(s.eval(&only_n), None, "T is unbound");
        let huge: Bindings = [(Symbol::new("N"), u64::MAX / 2), (Symbol::new("T"), 4)].into_iter().collect();
        assert_eq!(s.eval(&huge), None, "overflow is no value");
    }

    #[test]
    fn proofs_hold_for_every_value_above_the_bound() {
        let at_least_one = |_: &Symbol| 1;
        assert!((n() - Size::constant(1)).is_nonnegative(&at_least_one));
        assert!(!(n() - Size::constant(2)).is_nonnegative(&at_least_one));
        assert!(
            (n() * 784 - Size::constant(1) - (n() - Size::constant(1)) * 784 - Size::constant(783))
                .is_nonnegative(&at_least_one)
        );
        assert!((n() * t() - n()).is_nonnegative(&at_least_one));
        assert!(!(n() - t()).is_nonnegative(&at_least_one));
        assert!(!(-n()).is_nonnegative(&at_least_one));
        assert!((n() - Size::constant(4)).is_nonnegative(&|_: &Symbol| 4));
        // A saturated coefficient or an overflowing expansion proves nothing.
        let huge = n() * n() * n() * 8 + n() * n() * 8_388_608 - n() * 18_691_697_672_192;
        assert!(!huge.is_nonnegative(&|_: &Symbol| 1 << 20), "negative at N = 2^20");
        assert!(!(n() * i64::MAX).is_nonnegative(&|_: &Symbol| 1));
        assert!(!(n() * n() * n() * (1 << 40)).is_nonnegative(&|_: &Symbol| 1 << 30), "overflow is no proof");
        // Checked against evaluation on a grid.
        let cases = [n() * n() - n() * 3 + 2, n() * t() * 2 - t() - n(), n() * 5 - t() * 4, n() * n() - n()];
        for s in cases {
            if s.is_nonnegative(&at_least_one) {
                for nv in 1..30u64 {
                    for tv in 1..30u64 {
                        let b: Bindings = [(Symbol::new("N"), nv), (Symbol::new("T"), tv)].into_iter().collect();
                        assert!(s.eval(&b).unwrap() >= 0, "{s} at N={nv}, T={tv}");
                    }
                }
            }
        }
    }
}
