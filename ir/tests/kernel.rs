//! Kernel IR: the text form round-trips (a hand-written plan and random
//! plans), and the verifier proves accesses in bounds and rejects broken
//! plans with a message naming the kernel and the fault.

use kiln_ir::kernel::{
    ALIGN, AccId, Affine, ArenaLayout, BufferDecl, BufferId, BufferRole, KExpr, KStmt, Kernel, MatrixRef, Plan,
    RuntimeCall, Size, SizeSymbol, Storage, VarId, arena_layout, parse_plan, run_plan, verify_plan,
};
use kiln_ir::{BinaryOp, Bindings, CompareOp, DType, Literal, ReduceKind, Symbol, UnaryOp};
use proptest::prelude::*;
use proptest::test_runner::{RngAlgorithm, TestRng};

/// A buffer line with a malformed length.
const SUM_ROWS: &str = "plan forward {
  b0: f32[8] input 0
  b1: f32[4, ] temp
}
";

const EXAMPLE: &str = "plan forward {
  b0: f32[8] input 0
  b1: f32[2] output 0
  b2: f32[6] param fc.w
  b3: i32[3] input 1
  b4: f32[12] temp

  kernel sum_rows {
    for i0 in 0..2 parallel {
      a0: f32 = sum
      for i1 in 0..4 vector 4 {
        a0 += mul(b0[4*i0 + i1], const(f32, -0.5))
      }
      b1[i0] = select(gt(a0, const(f32, 0.0)), a0, neg(a0))
    }
  }

  kernel embed {
    for i0 in 0..3 {
      for i1 in 0..2 {
        b4[2*i0 + i1] = gather(b2, [i1], b3[i0], 2, 3)
        scatter_add(b4, [i1 + 6], cast(i64, b3[i0]), 2, 3, index(f32, [i0 - i1 + 1]))
      }
    }
  }

  kernel product {
    gemm(batch=1, m=2, n=2, k=2, a=b0[0, 2, 0], b=b2[0, 2, 0], c=b4[0, 2, 0])
  }
}
";

#[test]
fn a_hand_written_plan_round_trips() {
    let plan = parse_plan(EXAMPLE).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plan.to_string(), EXAMPLE);
    assert_eq!(plan.kernels.len(), 3);
    assert_eq!(plan.lifetimes(), vec![Some((0, 2)), Some((0, 0)), Some((1, 2)), Some((1, 1)), Some((1, 2))]);
    assert!(parse_plan(SUM_ROWS).is_err(), "a malformed buffer is a parse error");
}

fn broken(body: &str) -> String {
    let text = format!("plan p {{\n  b0: f32[8] input 0\n  b1: i32[4] temp\n\n  kernel k {{\n{body}\n  }}\n}}\n");
    parse_plan(&text).expect_err("the plan is invalid").message
}

#[test]
fn the_verifier_proves_bounds_and_checks_types() {
    let e = broken("    for i0 in 0..3 {\n      b0[4*i0] = const(f32, 1.0)\n    }");
    assert_eq!(e, "kernel `k`: b0[4*i0] reaches 0..=8, not provably inside the buffer's 8 elements");
    // The same nest with a stride that fits is accepted.
    let text = "plan p {\n  b0: f32[8] temp\n\n  kernel k {\n    for i0 in 0..3 {\n      b0[3*i0 + 1] = const(f32, 1.0)\n    }\n  }\n}\n";
    parse_plan(text).unwrap();
    let e = broken("    for i0 in 0..5 {\n      b0[-i0 + 3] = const(f32, 1.0)\n    }");
    assert!(e.contains("reaches -1..=3"), "{e}");
    let e = broken("    b0[i0] = const(f32, 1.0)");
    assert!(e.contains("loop variable i0 is not in scope"), "{e}");
    let e = broken("    b0[0] = b1[0]");
    assert!(e.contains("storing a i32 value into b0, a f32 buffer"), "{e}");
    let e = broken("    a0 += const(f32, 1.0)");
    assert!(e.contains("accumulator a0 is not declared here"), "{e}");
    let e = broken("    for i0 in 0..8 vector 3 {\n      b0[i0] = const(f32, 0.0)\n    }");
    assert!(e.contains("3 lanes is not a power of two"), "{e}");
    let e = broken("    for i0 in 0..2 {\n      for i0 in 0..2 {\n        b0[i0] = const(f32, 0.0)\n      }\n    }");
    assert!(e.contains("loop variable i0 is bound twice"), "{e}");
    let e = broken("    b0[0] = gather(b0, [0], const(f32, 1.0), 1, 8)");
    assert!(e.contains("an index must be an integer, not f32"), "{e}");
    let e = broken("    b0[0] = gather(b0, [1], b1[0], 1, 8)");
    assert!(e.contains("reaches 1..=8"), "{e}");
    let e = broken("    gemm(batch=1, m=3, n=3, k=3, a=b0[0, 3, 0], b=b0[0, 3, 0], c=b0[0, 3, 0])");
    assert!(
        e.contains(
            "gemm operand a (1 x 3 x 3 at b0[0], rows 3 apart, columns 1 apart) does not provably fit the buffer's 8 elements"
        ),
        "{e}"
    );
    let e = broken("    gemm(batch=1, m=2, n=2, k=2, a=b0[0, 1, 0, 2], b=b0[0, 2, 0], c=b1[0, 1, 0, 2])");
    assert!(e.contains("gemm result c must have a column stride of 1, not 2"), "{e}");
    let e = broken("    gemm(batch=1, m=2, n=2, k=2, a=b0[0, 1, 0, 2], b=b0[4, 2, 0], c=b0[0, 2, 0])");
    assert!(e.contains("gemm result b0 is also one of its operands"), "{e}");
    let e = broken("    b0[0] = add(const(f32, 1.0), const(f64, 1.0))");
    assert!(e.contains("Add of f32 and f64"), "{e}");
    // An empty loop accesses nothing, whatever its index says.
    let text = "plan p {\n  b0: f32[1] temp\n\n  kernel k {\n    for i0 in 0..0 {\n      b0[100*i0 + 100] = const(f32, 0.0)\n    }\n  }\n}\n";
    parse_plan(text).unwrap();
}

/// A plan over `size N >= 1 hint 8` with buffers `b0: f32[4*N]` and
/// `b1: f32[8]`, and `body` as its one kernel.
fn symbolic(body: &str) -> Result<Plan, String> {
    let text = format!(
        "plan p {{\n  size N >= 1 hint 8\n  b0: f32[4*N] input 0\n  b1: f32[8] temp\n\n  kernel k {{\n{body}\n  }}\n}}\n"
    );
    parse_plan(&text).map_err(|e| e.message)
}

#[test]
fn symbolic_sizes_round_trip_and_are_proved_for_every_value() {
    let text = "plan p {
  size N >= 1 hint 256
  size T >= 3 hint 35
  b0: f32[784*N] input 0
  b1: f32[N*T + N] output 0
  b2: i64[N] input 1

  kernel k {
    for i0 in 0..N parallel {
      for i1 in 0..T + 1 vector 4 {
        b1[(T + 1)*i0 + i1] = gather(b0, [3], b2[i0], 784, N)
      }
    }
    gemm(batch=1, m=N, n=4, k=1, a=b0[0, 784, 784*N], b=b0[0, 4, 0], c=b1[0, T + 1, 0])
  }
}
";
    let plan = parse_plan(text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plan.to_string(), text);
    // Rows of T + 1 elements: the coefficient of i0 is one polynomial.
    let copy = symbolic("    for i0 in 0..N {\n      b0[(N + 3)*i0] = const(f32, 1.0)\n    }").unwrap_err();
    assert!(
        copy.contains("b0[(N + 3)*i0] reaches 0..=N*N + 2*N - 3, not provably inside the buffer's 4*N elements"),
        "{copy}"
    );
    symbolic("    for i0 in 0..N {\n      for i1 in 0..4 {\n        b0[4*i0 + i1] = const(f32, 1.0)\n      }\n    }")
        .unwrap();
    // In bounds at the hint (N = 8 fills b1) but not at N = 9.
    let e = symbolic("    for i0 in 0..N {\n      b1[i0] = const(f32, 1.0)\n    }").unwrap_err();
    assert!(e.contains("b1[i0] reaches 0..=N - 1, not provably inside the buffer's 8 elements"), "{e}");
    let e = symbolic("    for i0 in 0..4 {\n      b0[(N - 3)*i0] = const(f32, 1.0)\n    }").unwrap_err();
    assert!(e.contains("the sign of coefficient N - 3 is not known"), "{e}");
    let e = symbolic("    for i0 in 0..T {\n      b0[i0] = const(f32, 1.0)\n    }").unwrap_err();
    assert!(e.contains("size T names T, which the plan does not declare"), "{e}");
    let e = symbolic("    for i0 in 0..N - 2 {\n      b0[i0] = const(f32, 1.0)\n    }").unwrap_err();
    assert!(e.contains("its extent N - 2 may be negative"), "{e}");
    let e = symbolic("    b0[i0*i0] = const(f32, 1.0)").unwrap_err();
    assert!(e.contains("a product of two loop variables is not affine"), "{e}");
    let e = parse_plan("plan p {\n  size N >= 0 hint 8\n}\n").unwrap_err();
    assert!(e.message.contains("size N needs a least value of at least 1"), "{e}");
    let e = parse_plan("plan p {\n  size N >= 1 hint 8\n  size N >= 1 hint 8\n}\n").unwrap_err();
    assert!(e.message.contains("size N is declared twice"), "{e}");
    // A least value makes a proof possible: N >= 2 keeps b0[4*N - 8 + i0] in bounds.
    let text = "plan p {\n  size N >= 2 hint 8\n  b0: f32[4*N] temp\n\n  kernel k {\n    for i0 in 0..8 {\n      b0[i0 + 4*N - 8] = const(f32, 1.0)\n    }\n  }\n}\n";
    parse_plan(text).unwrap();
    assert!(parse_plan(&text.replace(">= 2", ">= 1")).is_err());
}

#[test]
fn a_symbolic_plan_runs_at_every_binding_and_specializes_to_the_same_plan() {
    let plan = symbolic(
        "    for i0 in 0..N parallel {\n      for i1 in 0..4 {\n        b0[4*i0 + i1] = index(f32, [4*i0 + i1])\n      }\n    }",
    )
    .unwrap();
    for n in [1u64, 7, 1000] {
        let bindings: Bindings = [(Symbol::new("N"), n)].into_iter().collect();
        let mut buffers = vec![Storage::zeros(DType::F32, 4 * n as usize), Storage::zeros(DType::F32, 8)];
        run_plan(&plan, &bindings, &mut buffers).unwrap();
        assert_eq!(buffers[0], Storage::Float((0..4 * n).map(|i| i as f64).collect()));
        let constant = plan.specialize(&bindings);
        assert!(constant.symbols.is_empty());
        assert_eq!(constant.buffers[0].len, Size::constant(4 * n as i64));
        verify_plan(&constant).unwrap();
    }
    let missing = run_plan(&plan, &Bindings::new(), &mut []).unwrap_err();
    assert_eq!(missing, "size N has no value");
    let zero: Bindings = [(Symbol::new("N"), 0)].into_iter().collect();
    assert_eq!(run_plan(&plan, &zero, &mut []).unwrap_err(), "size N = 0 is below its least value 1");
}

#[test]
fn syntax_errors_have_positions() {
    let e = parse_plan("plan p {\n  b0: f32[8] input 0\n  kernel k {\n    b0[i0 +] = const(f32, 1.0)\n  }\n}\n")
        .unwrap_err();
    assert_eq!((e.line, e.column), (4, 12), "{e}");
    let e = parse_plan("plan p {\n  b1: f32[8] temp\n}\n").unwrap_err();
    assert!(e.message.contains("expected buffer b0 here"), "{e}");
    let e = parse_plan("plan p {\n  b0: f32[8] temp\n  kernel k {\n    b0[0] = frob(b0[0])\n  }\n}\n").unwrap_err();
    assert!(e.message.contains("unknown operation `frob`"), "{e}");
}

/// Builds random valid plans: loop nests over a buffer viewed as a
/// row-major array, with typed random expressions.
struct Gen {
    rng: TestRng,
    next_var: u32,
    next_acc: u32,
    /// The rows of the buffers' `rows x 8` view: 8, or the symbol `N` (at
    /// least 8).
    rows: Size,
}

impl Gen {
    fn new(seed: u64) -> Gen {
        let mut s = [0u8; 32];
        s[..8].copy_from_slice(&seed.to_le_bytes());
        Gen { rng: TestRng::from_seed(RngAlgorithm::ChaCha, &s), next_var: 0, next_acc: 0, rows: Size::constant(8) }
    }

    fn below(&mut self, n: u64) -> u64 {
        self.rng.next_u64() % n.max(1)
    }

    fn plan(&mut self) -> Plan {
        let symbolic = self.below(2) == 0;
        let symbols = if symbolic {
            self.rows = Size::symbol(Symbol::new("N"));
            vec![SizeSymbol { symbol: Symbol::new("N"), min: 8, hint: 8 + self.below(100) }]
        } else {
            Vec::new()
        };
        let len = self.rows.clone() * 8;
        let buffers = vec![
            BufferDecl { role: BufferRole::Input(0), dtype: DType::F32, len: len.clone() },
            BufferDecl { role: BufferRole::Param("w.x".into()), dtype: DType::F32, len: len.clone() },
            BufferDecl { role: BufferRole::Input(1), dtype: DType::I64, len: self.rows.clone() * 2 },
            BufferDecl { role: BufferRole::Temp, dtype: DType::F32, len: len.clone() },
            BufferDecl { role: BufferRole::Output(0), dtype: DType::F64, len },
        ];
        let kernels = (0..1 + self.below(3)).map(|k| self.kernel(k)).collect();
        Plan { name: "random".into(), symbols, buffers, kernels }
    }

    fn kernel(&mut self, k: u64) -> Kernel {
        self.next_var = 0;
        self.next_acc = 0;
        if self.below(5) == 0 {
            let m = MatrixRef::row_major(BufferId(0), 0, 4, 16);
            let c = MatrixRef::row_major(BufferId(3), 0, 4, 16);
            // Sometimes a transposed view: rows 1 apart, columns 4 apart.
            let m = if self.below(2) == 0 { MatrixRef { row_stride: 1.into(), col_stride: 4.into(), ..m } } else { m };
            return Kernel {
                name: format!("k{k}"),
                body: vec![KStmt::Call(RuntimeCall::Gemm {
                    batch: 4.into(),
                    m: 4.into(),
                    n: 4.into(),
                    k: 4.into(),
                    a: m.clone(),
                    b: m,
                    c,
                })],
            };
        }
        // A rows x 8 view of the buffers.
        let (outer, inner) = (VarId(0), VarId(1));
        self.next_var = 2;
        let row = Affine::var(outer).plus_term(outer, 7).plus_term(inner, 1);
        let mut body = Vec::new();
        if self.below(2) == 0 {
            let acc = AccId(0);
            self.next_acc = 1;
            let kind = if self.below(2) == 0 { ReduceKind::Sum } else { ReduceKind::Max };
            let value = self.expr(DType::F32, &row, 3);
            let inner_loop = KStmt::For {
                var: inner,
                extent: 8.into(),
                parallel: false,
                vector: 4,
                body: vec![KStmt::AccUpdate { acc, value }],
            };
            body.push(KStmt::For {
                var: outer,
                extent: self.rows.clone(),
                parallel: true,
                vector: 1,
                body: vec![
                    KStmt::AccInit { acc, dtype: DType::F32, kind },
                    inner_loop,
                    KStmt::Store { buffer: BufferId(3), index: Affine::var(outer), value: KExpr::Acc(acc) },
                ],
            });
        } else {
            let value = self.expr(DType::F64, &row, 3);
            let store = KStmt::Store { buffer: BufferId(4), index: row.clone(), value };
            let scatter = KStmt::ScatterAdd {
                buffer: BufferId(3),
                base: Affine::var(inner),
                index: KExpr::Load { buffer: BufferId(2), index: Affine::var(outer) },
                stride: 8.into(),
                bound: self.rows.clone(),
                value: self.expr(DType::F32, &row, 2),
            };
            let inner_loop =
                KStmt::For { var: inner, extent: 8.into(), parallel: false, vector: 1, body: vec![store, scatter] };
            body.push(KStmt::For {
                var: outer,
                extent: self.rows.clone(),
                parallel: self.below(2) == 0,
                vector: 1,
                body: vec![inner_loop],
            });
        }
        Kernel { name: format!("k{k}"), body }
    }

    /// A random expression of `dtype` reading at `index`.
    fn expr(&mut self, dtype: DType, index: &Affine, depth: u32) -> KExpr {
        let leaf = depth == 0 || self.below(3) == 0;
        if leaf {
            return match (dtype, self.below(4)) {
                (DType::F32, 0) => KExpr::Load { buffer: BufferId(0), index: index.clone() },
                (DType::F32, 1) => KExpr::Load { buffer: BufferId(1), index: index.clone() },
                (DType::F32, 2) => KExpr::Gather {
                    buffer: BufferId(1),
                    base: Affine::constant(3),
                    index: Box::new(KExpr::Load { buffer: BufferId(2), index: Affine::constant(5) }),
                    stride: 7.into(),
                    bound: 9.into(),
                },
                (DType::Bool, _) => {
                    let a = self.expr(DType::F32, index, 0);
                    let b = self.expr(DType::F32, index, 0);
                    KExpr::Compare(CompareOp::ALL[self.below(6) as usize], Box::new(a), Box::new(b))
                }
                (DType::I64, _) => KExpr::Index { index: index.clone(), dtype: DType::I64 },
                (d, _) => {
                    let value = if d.is_float() {
                        Literal::float((self.rng.next_u32() as f64).sqrt() - 10.5)
                    } else {
                        Literal::Int(3)
                    };
                    KExpr::Const { value, dtype: d }
                }
            };
        }
        match self.below(5) {
            0 => {
                let ops: Vec<UnaryOp> = UnaryOp::ALL.into_iter().filter(|u| u.accepts(dtype)).collect();
                let op = ops[self.below(ops.len() as u64) as usize];
                KExpr::Unary(op, Box::new(self.expr(dtype, index, depth - 1)))
            }
            1 if dtype.is_float() => {
                let op = BinaryOp::ALL[self.below(7) as usize];
                KExpr::Binary(
                    op,
                    Box::new(self.expr(dtype, index, depth - 1)),
                    Box::new(self.expr(dtype, index, depth - 1)),
                )
            }
            2 => {
                let c = self.expr(DType::Bool, index, depth - 1);
                KExpr::Select(
                    Box::new(c),
                    Box::new(self.expr(dtype, index, depth - 1)),
                    Box::new(self.expr(dtype, index, depth - 1)),
                )
            }
            3 => KExpr::Cast(dtype, Box::new(self.expr(DType::F32, index, depth - 1))),
            _ => KExpr::Cast(
                dtype,
                Box::new(KExpr::RandomBits {
                    key: Box::new(KExpr::Const { value: Literal::Int(7), dtype: DType::I64 }),
                    stream: self.below(9),
                    counter: index.clone(),
                    dtype: DType::I32,
                }),
            ),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn printing_then_parsing_gives_the_same_plan(seed in any::<u64>()) {
        let plan = Gen::new(seed).plan();
        verify_plan(&plan).map_err(|e| TestCaseError::fail(format!("{e}\n{plan}")))?;
        let text = plan.to_string();
        let parsed = parse_plan(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(&parsed, &plan, "{}", text);
    }

    /// The verifier's proof holds: a verified plan runs at any size at or
    /// above its symbols' least values without an access out of bounds
    /// (the reference executor checks every access).
    #[test]
    fn verified_plans_stay_in_bounds_at_every_size(seed in any::<u64>(), n in 8u64..40) {
        let plan = Gen::new(seed).plan();
        verify_plan(&plan).map_err(|e| TestCaseError::fail(format!("{e}\n{plan}")))?;
        let bindings: Bindings =
            plan.symbols.iter().map(|s| (s.symbol.clone(), n)).collect();
        let mut buffers: Vec<Storage> = plan
            .buffers
            .iter()
            .map(|b| Storage::zeros(b.dtype, b.len.eval(&bindings).unwrap() as usize))
            .collect();
        match run_plan(&plan, &bindings, &mut buffers) {
            Ok(()) => {}
            // Computed indices are checked at run time, not proved.
            Err(e) if e.contains("out of range 0..") => {}
            Err(e) => return Err(TestCaseError::fail(format!("{e}\n{plan}"))),
        }
    }
}

/// A kernel copying `len` elements of `from` into `to`.
fn copy(from: u32, to: u32, len: u64) -> Kernel {
    let v = VarId(0);
    let value = KExpr::Load { buffer: BufferId(from), index: Affine::var(v) };
    let store = KStmt::Store { buffer: BufferId(to), index: Affine::var(v), value };
    Kernel {
        name: format!("copy{from}to{to}"),
        body: vec![KStmt::For { var: v, extent: len.into(), parallel: true, vector: 1, body: vec![store] }],
    }
}

/// When each buffer is live, by the rules `arena_layout` documents, for a
/// plan whose kernel `k` copies buffer `copies[k].0` into `copies[k].1`.
fn live_ranges(plan: &Plan, copies: &[(u32, u32)]) -> Vec<(usize, usize)> {
    let end = plan.kernels.len();
    let mut ranges = Vec::new();
    for (b, decl) in plan.buffers.iter().enumerate() {
        let users: Vec<usize> =
            copies.iter().enumerate().filter(|(_, c)| c.0 == b as u32 || c.1 == b as u32).map(|(k, _)| k).collect();
        let (first, last) = match (users.first(), users.last()) {
            (Some(&f), Some(&l)) => (f, l),
            _ => (0, end),
        };
        ranges.push(match decl.role {
            BufferRole::Input(_) | BufferRole::Param(_) => (0, last),
            BufferRole::Output(_) => (first, end),
            BufferRole::Temp => (first, last),
        });
    }
    ranges
}

#[test]
fn a_chain_of_temporaries_shares_memory() {
    let len = 1000;
    let decl = |role| BufferDecl { role, dtype: DType::F32, len: len.into() };
    let mut buffers = vec![decl(BufferRole::Input(0))];
    buffers.extend((0..5).map(|_| decl(BufferRole::Temp)));
    buffers.push(decl(BufferRole::Output(0)));
    let kernels = (0..6).map(|k| copy(k, k + 1, len)).collect();
    let plan = Plan { name: "chain".into(), symbols: Vec::new(), buffers, kernels };
    let layout = arena_layout(&plan, &Bindings::new()).unwrap();
    // Each kernel reads one buffer and writes the next: two are live at once
    // (three around the input and the output, which live the whole way).
    assert_eq!(ArenaLayout::unshared_bytes(&plan, &Bindings::new()), Ok(7 * 4032));
    assert!(layout.bytes <= 4 * 4032, "{layout:?}");
    assert_ne!(layout.offsets[1], layout.offsets[2], "a kernel's input and output never share");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn buffers_live_at_once_never_overlap(seed in any::<u64>()) {
        let mut g = Gen::new(seed);
        let count = 2 + g.below(12) as u32;
        let dtypes = [DType::F32, DType::F64, DType::I32, DType::Bool];
        let buffers: Vec<BufferDecl> = (0..count)
            .map(|b| {
                let role = match g.below(6) {
                    _ if b == 0 => BufferRole::Input(0),
                    0 => BufferRole::Param(format!("p{b}")),
                    1 => BufferRole::Output(b),
                    _ => BufferRole::Temp,
                };
                BufferDecl { role, dtype: dtypes[g.below(4) as usize], len: g.below(300).into() }
            })
            .collect();
        let copies: Vec<(u32, u32)> =
            (0..1 + g.below(10)).map(|_| (g.below(count as u64) as u32, g.below(count as u64) as u32)).collect();
        let kernels = copies.iter().map(|&(from, to)| copy(from, to, 1)).collect();
        let plan = Plan { name: "random".into(), symbols: Vec::new(), buffers, kernels };
        let layout = arena_layout(&plan, &Bindings::new()).unwrap();
        let ranges = live_ranges(&plan, &copies);
        let extent = |b: usize| {
            let d = &plan.buffers[b];
            let len = d.len.as_const().unwrap() as u64;
            (layout.offsets[b], layout.offsets[b] + (len * d.dtype.size_bytes() as u64).max(1))
        };
        for a in 0..plan.buffers.len() {
            prop_assert_eq!(layout.offsets[a] % ALIGN, 0);
            prop_assert!(extent(a).1 <= layout.bytes);
            for b in a + 1..plan.buffers.len() {
                let live_together = ranges[a].0 <= ranges[b].1 && ranges[b].0 <= ranges[a].1;
                let apart = extent(a).1 <= extent(b).0 || extent(b).1 <= extent(a).0;
                prop_assert!(!live_together || apart, "b{} and b{} overlap\n{}\n{:?}", a, b, plan, layout);
            }
        }
        prop_assert!(layout.bytes <= ArenaLayout::unshared_bytes(&plan, &Bindings::new()).unwrap());
    }
}
