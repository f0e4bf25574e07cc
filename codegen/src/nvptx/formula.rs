//! Polynomials in a plan's symbolic dimensions, found by exact
//! interpolation: the numbers a plan lowered at several sizes writes
//! (extents, strides, buffer lengths, thread counts) as functions of the
//! sizes.
//!
//! Guarantee: [`Formula::fit_grid`] returns a polynomial only if it passes
//! exactly through every point of the grid, which has one more value along
//! each symbol than a cubic needs, so the last value along each checks what
//! the others determined; coefficients are rational with a common
//! denominator, and evaluating is exact integer arithmetic (an inexact
//! division is `None`, never a rounded value).

use std::collections::BTreeMap;
use std::fmt;

/// `(sum of coefficient * x0^e0 * x1^e1 ...) / denominator`, `denominator`
/// > 0, by exponent vectors (one exponent per symbol); no zero terms.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Formula {
    pub terms: BTreeMap<Vec<u32>, i64>,
    pub denominator: i64,
}

/// A fraction in lowest terms, denominator > 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Ratio(i128, i128);

fn gcd(a: i128, b: i128) -> i128 {
    let (mut a, mut b) = (a.abs(), b.abs());
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl Ratio {
    fn new(n: i128, d: i128) -> Option<Ratio> {
        if d == 0 {
            return None;
        }
        let g = gcd(n, d).max(1);
        let s = if d < 0 { -1 } else { 1 };
        Some(Ratio(s * n / g, s * d / g))
    }
    const ZERO: Ratio = Ratio(0, 1);
    fn add(self, o: Ratio) -> Option<Ratio> {
        Ratio::new(self.0.checked_mul(o.1)?.checked_add(o.0.checked_mul(self.1)?)?, self.1.checked_mul(o.1)?)
    }
    fn mul(self, o: Ratio) -> Option<Ratio> {
        Ratio::new(self.0.checked_mul(o.0)?, self.1.checked_mul(o.1)?)
    }
}

/// Polynomial arithmetic in one variable over ratios, by ascending power.
fn poly_mul(a: &[Ratio], b: &[Ratio]) -> Option<Vec<Ratio>> {
    let mut out = vec![Ratio::ZERO; a.len() + b.len() - 1];
    for (i, x) in a.iter().enumerate() {
        for (j, y) in b.iter().enumerate() {
            out[i + j] = out[i + j].add(x.mul(*y)?)?;
        }
    }
    Some(out)
}

fn poly_eval(p: &[Ratio], x: i128) -> Option<Ratio> {
    p.iter().rev().try_fold(Ratio::ZERO, |acc, c| acc.mul(Ratio(x, 1))?.add(*c))
}

/// The polynomial through all but the last point (Lagrange), if it also
/// passes through the last.
fn interpolate(points: &[(i128, Ratio)]) -> Option<Vec<Ratio>> {
    let (last, fitted) = points.split_last()?;
    let mut sum = vec![Ratio::ZERO];
    for (i, &(xi, yi)) in fitted.iter().enumerate() {
        let mut term = vec![yi];
        for (j, &(xj, _)) in fitted.iter().enumerate() {
            if i != j {
                let d = xi - xj;
                term = poly_mul(&term, &[Ratio::new(-xj, d)?, Ratio::new(1, d)?])?;
            }
        }
        if sum.len() < term.len() {
            sum.resize(term.len(), Ratio::ZERO);
        }
        for (k, c) in term.iter().enumerate() {
            sum[k] = sum[k].add(*c)?;
        }
    }
    (poly_eval(&sum, last.0)? == last.1).then_some(sum)
}

/// A polynomial in several variables over ratios.
type RPoly = BTreeMap<Vec<u32>, Ratio>;

/// Fits the values on the grid `axes[0] x axes[1] x ...` variable by
/// variable, the last one outermost.
fn fit_rational(axes: &[Vec<i64>], value: &dyn Fn(&[usize]) -> Option<Ratio>) -> Option<RPoly> {
    let Some((last, inner)) = axes.split_last() else {
        let v = value(&[])?;
        return Some(if v == Ratio::ZERO { RPoly::new() } else { RPoly::from([(Vec::new(), v)]) });
    };
    let mut slices = Vec::new();
    for j in 0..last.len() {
        let sub = |idx: &[usize]| {
            let mut full = idx.to_vec();
            full.push(j);
            value(&full)
        };
        slices.push(fit_rational(inner, &sub)?);
    }
    let monomials: std::collections::BTreeSet<Vec<u32>> = slices.iter().flat_map(|s| s.keys().cloned()).collect();
    let mut out = RPoly::new();
    for m in monomials {
        let points: Vec<(i128, Ratio)> = last
            .iter()
            .zip(&slices)
            .map(|(x, s)| (i128::from(*x), s.get(&m).copied().unwrap_or(Ratio::ZERO)))
            .collect();
        for (power, c) in interpolate(&points)?.into_iter().enumerate() {
            if c != Ratio::ZERO {
                let mut e = m.clone();
                e.push(power as u32);
                out.insert(e, c);
            }
        }
    }
    Some(out)
}

impl Formula {
    /// The constant `c` (in any number of symbols: its exponents are empty).
    pub fn constant(c: i64) -> Formula {
        let terms = if c == 0 { BTreeMap::new() } else { BTreeMap::from([(Vec::new(), c)]) };
        Formula { terms, denominator: 1 }
    }

    /// The polynomial of lowest degree along each symbol (at most
    /// `axes[k].len() - 2`) through `value` at every point of the grid of
    /// `axes`; `None` when none passes through all of them or `value` has
    /// no value somewhere.
    pub fn fit_grid(axes: &[Vec<i64>], value: &dyn Fn(&[usize]) -> Option<i64>) -> Option<Formula> {
        let rational = |idx: &[usize]| value(idx).map(|v| Ratio(i128::from(v), 1));
        let fitted = fit_rational(axes, &rational)?;
        let denominator = fitted.values().try_fold(1i128, |l, r| l.checked_mul(r.1 / gcd(l, r.1)))?;
        let mut terms = BTreeMap::new();
        for (e, r) in fitted {
            // Exponents are stored without trailing zeros, so one
            // monomial has one key whatever the number of symbols.
            let mut e = e;
            while e.last() == Some(&0) {
                e.pop();
            }
            terms.insert(e, i64::try_from(r.0.checked_mul(denominator / r.1)?).ok()?);
        }
        Some(Formula { terms, denominator: i64::try_from(denominator).ok()? })
    }

    /// [`Formula::fit_grid`] along one symbol.
    pub fn fit(points: &[(i64, i64)]) -> Option<Formula> {
        let axis: Vec<i64> = points.iter().map(|p| p.0).collect();
        Formula::fit_grid(&[axis], &|idx| Some(points[idx[0]].1))
    }

    /// The value at `xs` (one value per symbol); `None` if the division is
    /// inexact or anything overflows.
    pub fn eval(&self, xs: &[i64]) -> Option<i64> {
        let mut acc: i128 = 0;
        for (e, c) in &self.terms {
            let mut term = i128::from(*c);
            for (k, p) in e.iter().enumerate() {
                term = term.checked_mul(i128::from(*xs.get(k)?).checked_pow(*p)?)?;
            }
            acc = acc.checked_add(term)?;
        }
        let d = i128::from(self.denominator);
        if acc % d != 0 {
            return None;
        }
        i64::try_from(acc / d).ok()
    }

    /// The constant value, if the formula depends on no symbol.
    pub fn as_constant(&self) -> Option<i64> {
        match self.terms.iter().next() {
            None => Some(0),
            Some((e, c)) if self.terms.len() == 1 && e.is_empty() && self.denominator == 1 => Some(*c),
            _ => None,
        }
    }

    /// The formula times `k`.
    pub fn scaled(&self, k: i64) -> Formula {
        let terms = self.terms.iter().map(|(e, c)| (e.clone(), c * k)).filter(|(_, c)| *c != 0).collect();
        Formula { terms, denominator: self.denominator }
    }

    /// The formula written with `symbols` for the variables: `784*N`,
    /// `(N + 3)/4`, `N^2 - 1`, `N*T + 2*T`, `256`. Terms by descending
    /// total degree.
    pub fn render(&self, symbols: &[&str]) -> String {
        let mut terms: Vec<(&Vec<u32>, &i64)> = self.terms.iter().collect();
        terms.sort_by_key(|(e, _)| (std::cmp::Reverse(e.iter().sum::<u32>()), std::cmp::Reverse((*e).clone())));
        let mut text = String::new();
        for &(e, &c) in &terms {
            let magnitude = c.unsigned_abs();
            if text.is_empty() {
                if c < 0 {
                    text.push('-');
                }
            } else {
                text.push_str(if c < 0 { " - " } else { " + " });
            }
            let variables: Vec<String> = e
                .iter()
                .enumerate()
                .filter(|(_, p)| **p > 0)
                .map(|(k, p)| {
                    let s = symbols.get(k).copied().unwrap_or("?");
                    if *p == 1 { s.to_string() } else { format!("{s}^{p}") }
                })
                .collect();
            match (magnitude, variables.is_empty()) {
                (m, true) => text.push_str(&m.to_string()),
                (1, false) => text.push_str(&variables.join("*")),
                (m, false) => text.push_str(&format!("{m}*{}", variables.join("*"))),
            }
        }
        if text.is_empty() {
            text.push('0');
        }
        if self.denominator == 1 {
            text
        } else if terms.len() > 1 {
            format!("({text})/{}", self.denominator)
        } else {
            format!("{text}/{}", self.denominator)
        }
    }
}

impl fmt::Display for Formula {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(&["x", "y", "z"]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AXIS: [i64; 5] = [1027, 1031, 1035, 1039, 1043];

    fn fit(f: impl Fn(i64) -> i64) -> Option<Formula> {
        let points: Vec<(i64, i64)> = AXIS.iter().map(|&x| (x, f(x))).collect();
        Formula::fit(&points)
    }

    #[test]
    fn fits_polynomials_exactly_and_checks_the_last_point() {
        let f = fit(|x| 784 * x).unwrap();
        assert_eq!(f, Formula { terms: BTreeMap::from([(vec![1], 784)]), denominator: 1 });
        assert_eq!(f.render(&["N"]), "784*N");
        let f = fit(|x| 3 * x * x - 2 * x + 5).unwrap();
        assert_eq!(f.render(&["N"]), "3*N^2 - 2*N + 5");
        assert_eq!(f.eval(&[7]), Some(3 * 49 - 14 + 5));
        let f = fit(|x| (x + 1) / 4).unwrap();
        assert_eq!(f.render(&["N"]), "(N + 1)/4");
        assert_eq!(f.eval(&[3]), Some(1));
        assert_eq!(f.eval(&[4]), None, "an inexact division has no value");
        assert_eq!(fit(|_| 256).unwrap().render(&["N"]), "256");
        assert_eq!(fit(|_| 256).unwrap().as_constant(), Some(256));
        assert_eq!(fit(|x| 1 - x).unwrap().render(&["N"]), "-N + 1");
        assert_eq!(fit(|x| 1 - x).unwrap().scaled(4).render(&["N"]), "-4*N + 4");
    }

    #[test]
    fn fits_polynomials_in_two_symbols() {
        let axes = [AXIS.to_vec(), AXIS.iter().map(|x| x + 1).collect::<Vec<i64>>()];
        let grid = &axes;
        let value = |f: fn(i64, i64) -> i64| move |idx: &[usize]| Some(f(grid[0][idx[0]], grid[1][idx[1]]));
        let f = Formula::fit_grid(&axes, &value(|n, t| n * t * 64 + 3 * t + 1)).unwrap();
        assert_eq!(f.render(&["N", "T"]), "64*N*T + 3*T + 1");
        assert_eq!(f.eval(&[2, 5]), Some(64 * 10 + 15 + 1));
        let f = Formula::fit_grid(&axes, &value(|n, t| n * t * t / 2)).unwrap();
        assert_eq!(f.eval(&[3, 4]), Some(24));
        assert_eq!(Formula::fit_grid(&axes, &value(|n, t| n * t / 3)), None);
    }

    #[test]
    fn a_number_that_is_no_low_degree_polynomial_does_not_fit() {
        assert_eq!(fit(|x| x / 3), None);
        assert_eq!(fit(|x| x.pow(4)), None);
        let points: Vec<(i64, i64)> = AXIS.iter().enumerate().map(|(i, &x)| (x, 2 * x + i64::from(i == 4))).collect();
        assert_eq!(Formula::fit(&points), None, "the last point checks the fit");
    }
}
