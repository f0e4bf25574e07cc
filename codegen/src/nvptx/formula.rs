//! Polynomials in one symbolic dimension, found by exact interpolation: the
//! numbers a plan lowered at several sizes writes (extents, strides, buffer
//! lengths, thread counts) as functions of the size.
//!
//! Guarantee: [`Formula::fit`] returns a polynomial only if it passes
//! exactly through every point given, one more than its degree needs, so
//! the last point checks what the others determined; coefficients are
//! rational with a common denominator, and evaluating is exact integer
//! arithmetic (an inexact division is `None`, never a rounded value).

use std::fmt;

/// `(c0 + c1 x + c2 x^2 + ...) / denominator`, `denominator` > 0.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Formula {
    pub coefficients: Vec<i64>,
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
    fn int(n: i128) -> Ratio {
        Ratio(n, 1)
    }
    fn add(self, o: Ratio) -> Option<Ratio> {
        Ratio::new(self.0.checked_mul(o.1)?.checked_add(o.0.checked_mul(self.1)?)?, self.1.checked_mul(o.1)?)
    }
    fn mul(self, o: Ratio) -> Option<Ratio> {
        Ratio::new(self.0.checked_mul(o.0)?, self.1.checked_mul(o.1)?)
    }
}

/// Polynomial arithmetic over ratios, coefficients by ascending power.
fn poly_add(a: &[Ratio], b: &[Ratio]) -> Option<Vec<Ratio>> {
    let mut out = vec![Ratio::int(0); a.len().max(b.len())];
    for (i, c) in a.iter().enumerate() {
        out[i] = out[i].add(*c)?;
    }
    for (i, c) in b.iter().enumerate() {
        out[i] = out[i].add(*c)?;
    }
    Some(out)
}

fn poly_mul(a: &[Ratio], b: &[Ratio]) -> Option<Vec<Ratio>> {
    let mut out = vec![Ratio::int(0); a.len() + b.len() - 1];
    for (i, x) in a.iter().enumerate() {
        for (j, y) in b.iter().enumerate() {
            out[i + j] = out[i + j].add(x.mul(*y)?)?;
        }
    }
    Some(out)
}

impl Formula {
    pub fn constant(c: i64) -> Formula {
        Formula { coefficients: vec![c], denominator: 1 }
    }

    /// The polynomial of lowest degree (at most `points.len() - 2`) through
    /// all `points`, by Lagrange interpolation on all but the last, checked
    /// on the last; `None` when none passes through all of them.
    pub fn fit(points: &[(i64, i64)]) -> Option<Formula> {
        let (last, fitted) = points.split_last()?;
        if fitted.is_empty() || fitted.iter().all(|p| p.1 == fitted[0].1) {
            let f = Formula::constant(points[0].1);
            return points.iter().all(|p| p.1 == f.coefficients[0]).then_some(f);
        }
        let mut sum = vec![Ratio::int(0)];
        for (i, &(xi, yi)) in fitted.iter().enumerate() {
            let mut term = vec![Ratio::int(i128::from(yi))];
            for (j, &(xj, _)) in fitted.iter().enumerate() {
                if i != j {
                    let d = i128::from(xi) - i128::from(xj);
                    term = poly_mul(&term, &[Ratio::new(-i128::from(xj), d)?, Ratio::new(1, d)?])?;
                }
            }
            sum = poly_add(&sum, &term)?;
        }
        while sum.len() > 1 && sum.last() == Some(&Ratio::int(0)) {
            sum.pop();
        }
        let denominator = sum.iter().try_fold(1i128, |l, r| l.checked_mul(r.1 / gcd(l, r.1)))?;
        let coefficients = sum
            .iter()
            .map(|r| i64::try_from(r.0.checked_mul(denominator / r.1)?).ok())
            .collect::<Option<Vec<i64>>>()?;
        let f = Formula { coefficients, denominator: i64::try_from(denominator).ok()? };
        (f.eval(last.0) == Some(last.1) && fitted.iter().all(|p| f.eval(p.0) == Some(p.1))).then_some(f)
    }

    /// The value at `x`; `None` if the division is inexact or overflows.
    pub fn eval(&self, x: i64) -> Option<i64> {
        let mut acc: i128 = 0;
        for c in self.coefficients.iter().rev() {
            acc = acc.checked_mul(i128::from(x))?.checked_add(i128::from(*c))?;
        }
        let d = i128::from(self.denominator);
        if acc % d != 0 {
            return None;
        }
        i64::try_from(acc / d).ok()
    }

    pub fn is_constant(&self) -> bool {
        self.coefficients.len() == 1 && self.denominator == 1
    }

    /// The formula written with `symbol` for the variable: `784*N`,
    /// `(N + 3)/4`, `N^2 - 1`, `256`.
    pub fn render(&self, symbol: &str) -> String {
        let mut text = String::new();
        for (power, &c) in self.coefficients.iter().enumerate().rev() {
            if c == 0 && !(power == 0 && text.is_empty()) {
                continue;
            }
            let magnitude = c.unsigned_abs();
            if text.is_empty() {
                if c < 0 {
                    text.push('-');
                }
            } else {
                text.push_str(if c < 0 { " - " } else { " + " });
            }
            let variable = match power {
                0 => String::new(),
                1 => symbol.to_string(),
                p => format!("{symbol}^{p}"),
            };
            match (magnitude, variable.is_empty()) {
                (m, true) => text.push_str(&m.to_string()),
                (1, false) => text.push_str(&variable),
                (m, false) => text.push_str(&format!("{m}*{variable}")),
            }
        }
        if self.denominator == 1 {
            text
        } else if self.coefficients.iter().filter(|c| **c != 0).count() > 1 {
            format!("({text})/{}", self.denominator)
        } else {
            format!("{text}/{}", self.denominator)
        }
    }
}

impl fmt::Display for Formula {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render("x"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(f: impl Fn(i64) -> i64) -> Vec<(i64, i64)> {
        [1027, 1031, 1035, 1039, 1043].iter().map(|&x| (x, f(x))).collect()
    }

    #[test]
    fn fits_polynomials_exactly_and_checks_the_last_point() {
        let f = Formula::fit(&points(|x| 784 * x)).unwrap();
        assert_eq!(f, Formula { coefficients: vec![0, 784], denominator: 1 });
        assert_eq!(f.render("N"), "784*N");
        let f = Formula::fit(&points(|x| 3 * x * x - 2 * x + 5)).unwrap();
        assert_eq!(f.render("N"), "3*N^2 - 2*N + 5");
        assert_eq!(f.eval(7), Some(3 * 49 - 14 + 5));
        let f = Formula::fit(&points(|x| (x + 1) / 4)).unwrap();
        assert_eq!(f.render("N"), "(N + 1)/4");
        assert_eq!(f.eval(3), Some(1));
        assert_eq!(f.eval(4), None, "an inexact division has no value");
        assert_eq!(Formula::fit(&points(|_| 256)).unwrap().render("N"), "256");
        assert_eq!(Formula::fit(&points(|x| 1 - x)).unwrap().render("N"), "-N + 1");
    }

    #[test]
    fn a_number_that_is_no_low_degree_polynomial_does_not_fit() {
        assert_eq!(Formula::fit(&points(|x| x / 3)), None);
        assert_eq!(Formula::fit(&points(|x| x.pow(4))), None);
        let mut p = points(|x| 2 * x);
        p[4].1 += 1;
        assert_eq!(Formula::fit(&p), None, "the last point checks the fit");
    }
}
