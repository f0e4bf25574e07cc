//! kiln's benchmarks, a plain bench binary: `cargo bench --bench kiln`.
//! Every figure is the median of repeated runs on fixed inputs, printed as
//! a Markdown table for `docs/performance.md`. Pass a filter (`matmul`,
//! `chain`, `bandwidth`, `step`, `conv`, `optimize`, `compile`, and
//! `profile`, `cnn`, `rnn`, `gru-step` and `transformer-step`, which only
//! run when named) to run only some, and
//! `--threads N` to use N threads.

use std::path::Path;
use std::time::{Duration, Instant};

use kiln_frontend::Options;
use kiln_ir::interp::Tensor;
use kiln_ir::{Bindings, DType, Symbol};
use kiln_runtime::execute::Execute;
use ndarray::{ArrayD, IxDyn};

/// Runs `f` `runs` times after one warm-up and returns the median time.
fn median(runs: usize, mut f: impl FnMut()) -> Duration {
    f();
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

fn filled(shape: &[usize], seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let v = (0..n).map(|i| kiln_ir::random::uniform(seed, 0, i as u64) - 0.5).collect();
    Tensor::float(DType::F32, ArrayD::from_shape_vec(IxDyn(shape), v).expect("sized"))
}

fn module(text: &str) -> kiln_ir::Module {
    kiln_ir::parse_module(text).expect("benchmark IR parses")
}

/// A plan compiled for `m`, with host buffers filled from `inputs`: what a
/// benchmark times, without converting tensors on every run.
fn prepared(
    m: &kiln_ir::Module,
    inputs: &[Tensor],
) -> (std::rc::Rc<kiln_codegen::CompiledPlan>, Vec<kiln_codegen::HostBuffer>) {
    let jit = kiln::jit::Jit::new(m);
    let compiled = jit.compiled("f", &Bindings::new()).expect("compiles");
    let buffers = compiled
        .plan()
        .buffers
        .iter()
        .map(|b| match b.role {
            kiln_ir::kernel::BufferRole::Input(i) => kiln_codegen::HostBuffer::from_tensor(&inputs[i as usize]),
            _ => kiln_codegen::HostBuffer::zeros(b.dtype, b.len.as_const().expect("constant shapes") as usize),
        })
        .collect();
    (compiled, buffers)
}

fn matmul(n: usize) -> f64 {
    let text = format!(
        "func f(a: f32[{n}, {n}], b: f32[{n}, {n}]) -> (f32[{n}, {n}]) {{\n  %0: f32[{n}, {n}] = input 0\n  %1: f32[{n}, {n}] = input 1\n  %2: f32[{n}, {n}] = matmul %0, %1\n  return %2\n}}\n"
    );
    let (compiled, mut buffers) = prepared(&module(&text), &[filled(&[n, n], 1), filled(&[n, n], 2)]);
    let runs = match n {
        ..=512 => 51,
        1024 => 21,
        _ => 9,
    };
    let t = median(runs, || compiled.run(&Bindings::new(), &mut buffers).expect("runs"));
    2.0 * (n as f64).powi(3) / t.as_secs_f64() / 1e9
}

/// `relu(a * x + b) * sigmoid(x)` on `n` floats, as graph IR.
fn chain_ir(n: usize) -> String {
    format!(
        "func f(x: f32[{n}]) -> (f32[{n}]) {{
  %0: f32[{n}] = input 0
  %1: f32[{n}] = const 1.5
  %2: f32[{n}] = mul %1, %0
  %3: f32[{n}] = const 0.25
  %4: f32[{n}] = add %2, %3
  %5: f32[{n}] = const 0.0
  %6: f32[{n}] = max %4, %5
  %7: f32[{n}] = neg %0
  %8: f32[{n}] = exp %7
  %9: f32[{n}] = const 1.0
  %10: f32[{n}] = add %9, %8
  %11: f32[{n}] = div %9, %10
  %12: f32[{n}] = mul %6, %11
  return %12
}}
"
    )
}

/// `1.5 x` on `n` floats, as graph IR: kiln's own streaming kernel.
fn scale_ir(n: usize) -> String {
    format!(
        "func f(x: f32[{n}]) -> (f32[{n}]) {{
  %0: f32[{n}] = input 0
  %1: f32[{n}] = const 1.5
  %2: f32[{n}] = mul %1, %0
  return %2
}}
"
    )
}

/// Runs the one-input elementwise function `text` on `n` floats: bytes of
/// x in and out per second, the time, and the number of kernels.
fn elementwise(text: &str, n: usize) -> (f64, Duration, usize) {
    let (compiled, mut buffers) = prepared(&module(text), &[filled(&[n], 3)]);
    let t = median(7, || compiled.run(&Bindings::new(), &mut buffers).expect("runs"));
    ((2 * n * 4) as f64 / t.as_secs_f64() / 1e9, t, compiled.plan().kernels.len())
}

/// The machine's streaming rate through plain Rust, in bytes read and
/// written per second: a copy of `n` floats (`copy_from_slice`, one
/// thread), and STREAM's scale `y = 1.5 x` split across rayon's threads as
/// kiln's kernels are.
fn bandwidth(n: usize) -> (f64, f64) {
    use rayon::prelude::*;
    let src = vec![1.0f32; n];
    let mut dst = vec![0.0f32; n];
    let copy = median(7, || {
        dst.copy_from_slice(&src);
        std::hint::black_box(&dst);
    });
    let chunk = n.div_ceil(rayon::current_num_threads());
    let scale = median(7, || {
        dst.par_chunks_mut(chunk).zip(src.par_chunks(chunk)).for_each(|(d, s)| {
            d.iter_mut().zip(s).for_each(|(d, s)| *d = 1.5 * s);
        });
        std::hint::black_box(&dst);
    });
    let rate = |t: Duration| (2 * n * 4) as f64 / t.as_secs_f64() / 1e9;
    (rate(copy), rate(scale))
}

/// An example's module with its training step, the parameters that step
/// updates, initial parameters and a batch of 256 (with a key when the
/// step takes one).
fn training_step(example: &str) -> (kiln_ir::Module, Vec<String>, kiln_ir::interp::Params, Vec<Tensor>) {
    training_step_at(example, &[], 256)
}

/// [`training_step`] at batch `batch`, with values for the root model's
/// arguments (`--set size=28`).
fn training_step_at(
    example: &str,
    args: &[(&str, &str)],
    batch: usize,
) -> (kiln_ir::Module, Vec<String>, kiln_ir::interp::Params, Vec<Tensor>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(example);
    let args = args.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let compiled = kiln::compile_file(&path, &Options { args, ..Options::default() }).expect("compiles");
    let m = kiln::with_train_step(&compiled).expect("a training step");
    let updates = compiled.train.as_ref().expect("a train block").updates.clone();
    let params = kiln_ir::initialize_params(&m, 0);
    let f = m.function("train_step").expect("train_step");
    let inputs: Vec<Tensor> = f
        .inputs
        .iter()
        .enumerate()
        .map(|(k, i)| match i.ty.dtype {
            DType::I32 => {
                // Labels [N] or tokens [N, steps]: small valid indices.
                let shape: Vec<usize> =
                    i.ty.shape.0.iter().map(|d| d.as_const().unwrap_or(batch as u64) as usize).collect();
                let n: usize = shape.iter().product();
                let values = ArrayD::from_shape_vec(IxDyn(&shape), (0..n).map(|j| (j % 10) as i64).collect());
                Tensor::int(DType::I32, values.expect("sized"))
            }
            DType::I64 => Tensor::int(DType::I64, ArrayD::from_elem(IxDyn(&[]), 7)),
            _ => {
                let shape: Vec<usize> =
                    i.ty.shape.0.iter().map(|d| d.as_const().unwrap_or(batch as u64) as usize).collect();
                filled(&shape, k as u64)
            }
        })
        .collect();
    (m, updates, params, inputs)
}

/// Runs a compiled plan whose integer inputs (labels) are rewritten as
/// zeros first: the arena reuses an input's memory once it is dead, and a
/// label out of range is an error. Float inputs keep whatever they hold.
fn run_with_labels(compiled: &kiln_codegen::CompiledPlan, arena: &mut kiln_codegen::Arena) {
    zero_labels(compiled, arena);
    compiled.run_arena(arena).expect("runs");
}

/// Writes zeros into the plan's integer inputs (labels).
fn zero_labels(compiled: &kiln_codegen::CompiledPlan, arena: &mut kiln_codegen::Arena) {
    for (b, decl) in compiled.plan().buffers.iter().enumerate() {
        if let (kiln_ir::kernel::BufferRole::Input(_), DType::I32) = (&decl.role, decl.dtype) {
            let len = decl.len.eval(arena.bindings()).expect("a length at the arena's sizes");
            arena.write_elements(b, &vec![0i32; len as usize]).expect("labels fit their buffer");
        }
    }
}

/// An example's training step at batch 256 on the JIT, three ways in turn
/// at every round (so that the machine's drift hits all three alike),
/// medians of 41 rounds in milliseconds: in a session, as `kiln train`
/// runs it (parameters stay in f32 buffers; the batch goes in, the loss
/// comes out); through `Jit::run` (every parameter converted from and to
/// f64 tensors); and the compiled plan alone, its batch written into an
/// arena whose parameters are already there.
fn step_jit(example: &str) -> [f64; 3] {
    let (m, updates, params, inputs) = training_step(example);
    let jit = kiln::jit::Jit::new(&m);
    let mut session = jit.session(params.clone());
    let mut bindings = Bindings::new();
    bindings.insert(Symbol::new("N"), 256);
    let plan = jit.compiled("train_step", &bindings).expect("compiles");
    let mut arena = plan.arena(&bindings).expect("an arena");
    let mut ways: [Box<dyn FnMut() + '_>; 3] = [
        Box::new(|| drop(session.run_updating("train_step", &inputs, &updates).expect("runs"))),
        Box::new(|| drop(jit.run("train_step", &inputs, &params).expect("runs"))),
        // The batch written in first: the arena reuses an input's memory
        // once it is dead, so a plan run twice without it reads garbage.
        Box::new(|| {
            for (b, decl) in plan.plan().buffers.iter().enumerate() {
                if let kiln_ir::kernel::BufferRole::Input(n) = decl.role {
                    arena.write(b, &inputs[n as usize]).expect("an input fits its buffer");
                }
            }
            plan.run_arena(&mut arena).expect("runs")
        }),
    ];
    let mut times: [Vec<Duration>; 3] = Default::default();
    for round in 0..42 {
        for (way, t) in ways.iter_mut().zip(times.iter_mut()) {
            let start = Instant::now();
            way();
            if round > 0 {
                t.push(start.elapsed());
            }
        }
    }
    times.map(|mut t| {
        t.sort();
        t[t.len() / 2].as_secs_f64() * 1e3
    })
}

/// The convolutional networks' training steps at batch 128 in a JIT
/// session, as `kiln train` runs them (median of `runs` after a warm-up),
/// and the time to compile each step (lowering, e-graph, Cranelift).
fn cnn_steps() {
    println!("| training step, batch 128, JIT session | ms | compile ms |\n| --- | --- | --- |");
    for (example, args, runs) in
        [("lenet.kiln", &[][..], 21), ("batchnorm_lenet.kiln", &[][..], 21), ("resnet.kiln", &[("size", "28")][..], 7)]
    {
        let (m, updates, params, inputs) = training_step_at(example, args, 128);
        let start = Instant::now();
        let jit = kiln::jit::Jit::new(&m);
        let mut bindings = Bindings::new();
        bindings.insert(Symbol::new("N"), 128);
        drop(jit.compiled("train_step", &bindings).expect("compiles"));
        let compile_ms = start.elapsed().as_secs_f64() * 1e3;
        let mut session = jit.session(params);
        let t = median(runs, || drop(session.run_updating("train_step", &inputs, &updates).expect("runs")));
        let sizes = args.iter().map(|(k, v)| format!(" {k}={v}")).collect::<String>();
        println!("| {example}{sizes} | {:.2} | {compile_ms:.0} |", t.as_secs_f64() * 1e3);
    }
    println!();
}

/// The book's recurrent language models unrolled over 32 and 128 steps at
/// the book's batch of 1024: the training step's compile time (graph
/// passes, lowering, Cranelift) and its time, and the tokens it trains on
/// per second (`docs/performance.md`, "Recurrence").
fn rnn_steps(examples: &[&str], all_steps: &[&str]) {
    println!(
        "| training step, batch 1024, JIT session | steps | compile ms | step ms | tokens/s |\n| --- | --- | --- | --- | --- |"
    );
    for &example in examples {
        for &steps in all_steps {
            let (m, updates, params, inputs) = training_step_at(example, &[("steps", steps)], 1024);
            let start = Instant::now();
            let jit = kiln::jit::Jit::new(&m);
            let mut bindings = Bindings::new();
            bindings.insert(Symbol::new("N"), 1024);
            drop(jit.compiled("train_step", &bindings).expect("compiles"));
            let compile_ms = start.elapsed().as_secs_f64() * 1e3;
            let mut session = jit.session(params);
            let t = median(11, || drop(session.run_updating("train_step", &inputs, &updates).expect("runs")));
            let tokens = 1024.0 * steps.parse::<f64>().expect("a number") / t.as_secs_f64();
            println!("| {example} | {steps} | {compile_ms:.0} | {:.2} | {tokens:.0} |", t.as_secs_f64() * 1e3);
        }
    }
    println!();
}

/// The same training step on the reference interpreter, in milliseconds.
fn step_interpreted(example: &str) -> f64 {
    let (m, _, params, inputs) = training_step(example);
    let interpreter = kiln_runtime::execute::Interpreter { module: &m };
    median(11, || drop(interpreter.run("train_step", &inputs, &params).expect("runs"))).as_secs_f64() * 1e3
}

/// An example's training step at batch `batch` with values for the
/// model's arguments: its plan, compiled.
fn compiled_step_at(
    example: &str,
    args: &[(&str, &str)],
    batch: u64,
) -> (kiln_ir::kernel::Plan, kiln_codegen::CompiledPlan, Bindings) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(example);
    let args = args.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let compiled = kiln::compile_file(&path, &Options { args, ..Options::default() }).expect("compiles");
    let m = kiln::with_train_step(&compiled).expect("a training step");
    let mut bindings = Bindings::new();
    bindings.insert(Symbol::new("N"), batch);
    let plan = kiln_passes::compile_plan(&m, "train_step", &bindings).expect("lowers");
    let compiled = kiln_codegen::compile_plan(&plan).expect("compiles");
    (plan, compiled, bindings)
}

/// The single-threaded products the book's models make (LeNet's per
/// example and its weight gradients, ResNet-18's at 28x28 and batch 128,
/// the MLP's, a square one), through `matrixmultiply` and the `gemm`
/// crate, alternating in one process: what chose the `gemm` crate for
/// the JIT's GEMM calls (`docs/performance.md`). `b` transposed reads
/// the right operand with a column stride, as weight gradients do.
fn gemm_crates() {
    let shapes: [(usize, usize, usize, bool, usize, &str); 16] = [
        (6, 784, 25, false, 128, "LeNet conv1, per example"),
        (16, 100, 150, false, 128, "LeNet conv2, per example"),
        (150, 16, 12800, true, 1, "LeNet conv2 weight gradient"),
        (25, 6, 100352, true, 1, "LeNet conv1 weight gradient"),
        (128, 120, 400, false, 1, "LeNet dense 1"),
        (6272, 64, 576, false, 1, "ResNet stage 1 forward"),
        (576, 64, 6272, true, 1, "ResNet stage 1 weight gradient"),
        (2048, 128, 1152, false, 1, "ResNet stage 2 forward"),
        (1152, 128, 2048, true, 1, "ResNet stage 2 weight gradient"),
        (512, 256, 2304, false, 1, "ResNet stage 3 forward"),
        (2304, 256, 512, true, 1, "ResNet stage 3 weight gradient"),
        (128, 512, 4608, false, 1, "ResNet stage 4 forward"),
        (128, 4608, 512, false, 1, "ResNet stage 4 input gradient"),
        (4608, 512, 128, true, 1, "ResNet stage 4 weight gradient"),
        (256, 256, 784, false, 1, "MLP layer 1 at batch 256"),
        (1024, 1024, 1024, false, 1, "square"),
    ];
    println!(
        "| product (m x n x k, times), one thread | matrixmultiply GFLOP/s | gemm GFLOP/s | gemm / matrixmultiply |"
    );
    println!("| --- | --- | --- | --- |");
    for (m, n, k, b_transposed, times, name) in shapes {
        let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.25).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.5).collect();
        let mut c = vec![0.0f32; m * n];
        let (rsb, csb) = if b_transposed { (1isize, k as isize) } else { (n as isize, 1) };
        let (rsa, rsc) = (k as isize, n as isize);
        let mut with_matrixmultiply = || {
            for _ in 0..times {
                // SAFETY: a is m x k, b k x n and c m x n, with these strides.
                unsafe {
                    matrixmultiply::sgemm(
                        m,
                        k,
                        n,
                        1.0,
                        a.as_ptr(),
                        rsa,
                        1,
                        b.as_ptr(),
                        rsb,
                        csb,
                        0.0,
                        c.as_mut_ptr(),
                        rsc,
                        1,
                    )
                }
            }
        };
        let first = median_ms(&mut with_matrixmultiply);
        // What the JIT's GEMM calls run: the `gemm` crate, one thread.
        let mut with_gemm = || {
            for _ in 0..times {
                // SAFETY: as above.
                unsafe {
                    kiln_codegen::product_f32(m, k, n, a.as_ptr(), rsa, 1, b.as_ptr(), rsb, csb, c.as_mut_ptr(), rsc, 1)
                }
            }
        };
        let second = median_ms(&mut with_gemm);
        let gflop = 2.0 * (m * n * k * times) as f64 / 1e6;
        println!(
            "| {name} ({m} x {n} x {k}{}{}) | {:.1} | {:.1} | {:.2}x |",
            if b_transposed { ", b transposed" } else { "" },
            if times > 1 { format!(", {times} times") } else { String::new() },
            gflop / first,
            gflop / second,
            first / second
        );
    }
    println!();
}

/// The median of 9 timed calls of `f` after one warm-up, in ms.
fn median_ms(f: &mut dyn FnMut()) -> f64 {
    f();
    let mut times: Vec<f64> = (0..9)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[4]
}

/// Where `function` of the file at `path` spends its time at batch
/// `batch`, part by part (a kernel's statements run as parts), over `runs`
/// runs: the 30 largest parts other than GEMM calls, each with its loop nest's extents and its
/// store or GEMM.
fn profile_parts(path: &str, function: &str, batch: u64, runs: u32) {
    let compiled = kiln::compile_file(Path::new(path), &Options::default()).expect("compiles");
    let m = if function == "train_step" {
        kiln::with_train_step(&compiled).expect("a training step")
    } else {
        compiled.module
    };
    let mut bindings = Bindings::new();
    bindings.insert(Symbol::new("N"), batch);
    let plan = kiln_passes::compile_plan(&m, function, &bindings).expect("lowers");
    let compiled = kiln_codegen::compile_plan(&plan).expect("compiles");
    let mut arena = compiled.arena(&bindings).expect("an arena");
    let mut totals: Vec<(String, String, Duration)> = Vec::new();
    for run in 0..=runs {
        zero_labels(&compiled, &mut arena);
        let parts = compiled.profile_parts(&mut arena).expect("runs");
        if run == 0 {
            totals = parts.into_iter().map(|(k, text, _)| (k, text, Duration::ZERO)).collect();
        } else {
            totals.iter_mut().zip(parts).for_each(|(t, (.., d))| t.2 += d);
        }
    }
    let all: Duration = totals.iter().map(|t| t.2).sum();
    let per_run = |d: &Duration| d.as_secs_f64() * 1e3 / f64::from(runs);
    totals.sort_by_key(|t| std::cmp::Reverse(t.2));
    println!("{path} {function}, N = {batch}: {:.3} ms a run over {} parts", per_run(&all), totals.len());
    for (kernel, text, time) in totals.iter().filter(|t| !t.1.contains("gemm(")).take(30) {
        let extents: Vec<&str> = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("for "))
            .filter_map(|l| l.split(" in 0..").nth(1))
            .collect();
        let body = text.lines().map(str::trim).find(|l| l.contains(" = ") || l.starts_with("gemm")).unwrap_or("");
        println!(
            "{:8.3} ms {:3.0}% {kernel} [{}] {body}",
            per_run(time),
            100.0 * time.as_secs_f64() / all.as_secs_f64(),
            extents.join(", ")
        );
    }
    // By kernel kind (the name after `k<number>_`), GEMM calls apart.
    let mut kinds: Vec<(String, Duration)> = Vec::new();
    for (kernel, text, time) in &totals {
        let kind = kernel.split_once('_').map_or(kernel.as_str(), |(_, k)| k);
        let kind = if text.contains("gemm(") { format!("{kind}: gemm") } else { format!("{kind}: loops") };
        match kinds.iter_mut().find(|(k, _)| *k == kind) {
            Some(entry) => entry.1 += *time,
            None => kinds.push((kind, *time)),
        }
    }
    kinds.sort_by_key(|k| std::cmp::Reverse(k.1));
    for (kind, time) in kinds.iter().take(15) {
        println!("{:8.3} ms {:3.0}% {kind}", per_run(time), 100.0 * time.as_secs_f64() / all.as_secs_f64());
    }
}

/// Where the compiled MLP training step spends its time: each kernel's
/// total over 50 runs, largest first.
fn profile(example: &str) {
    profile_at(example, &[], 256, 50);
}

/// [`profile`] at batch `batch` with the model's arguments, over `runs` runs.
fn profile_at(example: &str, args: &[(&str, &str)], batch: u64, runs: u32) {
    let (_, compiled, bindings) = compiled_step_at(example, args, batch);
    let mut arena = compiled.arena(&bindings).expect("an arena");
    let mut totals: Vec<(String, Duration)> = Vec::new();
    for run in 0..=runs {
        zero_labels(&compiled, &mut arena);
        let times = compiled.profile_arena(&mut arena).expect("runs");
        if run == 0 {
            totals = times.into_iter().map(|(name, _)| (name, Duration::ZERO)).collect();
        } else {
            totals.iter_mut().zip(times).for_each(|(t, (_, d))| t.1 += d);
        }
    }
    let all: Duration = totals.iter().map(|t| t.1).sum();
    totals.sort_by_key(|t| std::cmp::Reverse(t.1));
    println!("| {example}: kernel | ms per step | share |\n| --- | --- | --- |");
    let per_run = |d: &Duration| d.as_secs_f64() * 1e3 / f64::from(runs);
    for (name, total) in totals.iter().take(25) {
        println!("| {name} | {:.3} | {:.0}% |", per_run(total), 100.0 * total.as_secs_f64() / all.as_secs_f64());
    }
    println!("| all {} kernels | {:.3} | 100% |\n", totals.len(), per_run(&all));
    // By what the kernels compute: the name after `k<number>_`.
    let mut kinds: Vec<(String, Duration, usize)> = Vec::new();
    for (name, total) in &totals {
        let kind = name.split_once('_').map_or(name.as_str(), |(_, k)| k).to_string();
        match kinds.iter_mut().find(|(k, ..)| *k == kind) {
            Some(entry) => {
                entry.1 += *total;
                entry.2 += 1;
            }
            None => kinds.push((kind, *total, 1)),
        }
    }
    kinds.sort_by_key(|k| std::cmp::Reverse(k.1));
    println!("| {example}: kernels computing | count | ms per step | share |\n| --- | --- | --- | --- |");
    for (kind, total, count) in kinds.iter().take(12) {
        println!(
            "| {kind} | {count} | {:.3} | {:.0}% |",
            per_run(total),
            100.0 * total.as_secs_f64() / all.as_secs_f64()
        );
    }
    println!();
}

/// Every example's forward pass and training step at batch 256, lowered
/// unoptimized (no simplification, one kernel per op) and optimized (the
/// default): kernels and milliseconds per call of the compiled plan.
fn optimize() {
    println!(
        "| batch 256, compiled plan alone | function | kernels unoptimized | kernels optimized | ms unoptimized | ms optimized | speed-up |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    let mut bindings = Bindings::new();
    bindings.insert(Symbol::new("N"), 256);
    for example in ["linear_regression.kiln", "softmax_regression.kiln", "mlp.kiln", "lenet.kiln"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(example);
        let compiled = kiln::compile_file(&path, &Options::default()).expect("compiles");
        let m = kiln::with_train_step(&compiled).expect("a training step");
        for function in ["forward", "train_step"] {
            let time = |options| {
                let plan = kiln_passes::compile(&m, function, &bindings, &options).expect("lowers").plan;
                let compiled = kiln_codegen::compile_plan(&plan).expect("compiles");
                let mut arena = compiled.arena(&bindings).expect("an arena");
                let runs = if example == "lenet.kiln" { 5 } else { 31 };
                let t = median(runs, || run_with_labels(&compiled, &mut arena));
                (plan.kernels.len(), t.as_secs_f64() * 1e3)
            };
            let unoptimized = time(kiln_passes::CompileOptions::unoptimized());
            let optimized = time(kiln_passes::CompileOptions::default());
            println!(
                "| {example} | {function} | {} | {} | {:.3} | {:.3} | {:.2}x |",
                unoptimized.0,
                optimized.0,
                unoptimized.1,
                optimized.1,
                unoptimized.1 / optimized.1
            );
        }
    }
    println!();
}

/// LeNet's forward pass and training step at batch `n` with each way of
/// lowering convolutions: milliseconds per call of the compiled plan.
fn conv(n: u64) {
    println!(
        "| batch, compiled plan alone | function | direct ms | im2col + GEMM per example ms | im2row + one GEMM ms | auto (the default) ms |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for (example, args, batch, runs) in [
        ("lenet.kiln", &[][..], n, 11),
        ("batchnorm_lenet.kiln", &[][..], 128, 11),
        ("resnet.kiln", &[("size", "28")][..], 128, 3),
    ] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(example);
        let args = args.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let compiled = kiln::compile_file(&path, &Options { args, ..Options::default() }).expect("compiles");
        let m = kiln::with_train_step(&compiled).expect("a training step");
        let mut bindings = Bindings::new();
        bindings.insert(Symbol::new("N"), batch);
        for function in ["forward", "train_step"] {
            let time = |conv| {
                let lower = kiln_passes::LowerOptions { conv, ..Default::default() };
                let options = kiln_passes::CompileOptions { lower, ..Default::default() };
                let plan = kiln_passes::compile(&m, function, &bindings, &options).expect("lowers").plan;
                let compiled = kiln_codegen::compile_plan(&plan).expect("compiles");
                let mut arena = compiled.arena(&bindings).expect("an arena");
                median(runs, || run_with_labels(&compiled, &mut arena)).as_secs_f64() * 1e3
            };
            // The direct loops take minutes on ResNet-18's step.
            let direct = if example == "resnet.kiln" {
                "-".to_string()
            } else {
                format!("{:.2}", time(kiln_passes::ConvLowering::Direct))
            };
            let im2col = time(kiln_passes::ConvLowering::Im2col);
            let im2row = time(kiln_passes::ConvLowering::Im2row);
            let auto = time(kiln_passes::ConvLowering::Auto);
            println!("| {example}, {batch} | {function} | {direct} | {im2col:.2} | {im2row:.2} | {auto:.2} |");
        }
    }
    println!();
}

/// Lowering plus Cranelift compilation of an example's training step (or
/// forward function), batch 256, in milliseconds.
fn compile_time(example: &str) -> (f64, usize) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(example);
    let compiled = kiln::compile_file(&path, &Options::default()).expect("compiles");
    let (m, function) = match compiled.train {
        Some(_) => (kiln::with_train_step(&compiled).expect("a step"), "train_step"),
        None => (compiled.module.clone(), "forward"),
    };
    let mut bindings = Bindings::new();
    bindings.insert(Symbol::new("N"), 256);
    let mut kernels = 0;
    let t = median(5, || {
        let plan = kiln_passes::compile_plan(&m, function, &bindings).expect("lowers");
        kernels = plan.kernels.len();
        drop(kiln_codegen::compile_plan(&plan).expect("compiles"));
    });
    (t.as_secs_f64() * 1e3, kernels)
}

/// `--threads N` from the command line: how many threads kiln's kernels
/// and GEMM use (rayon's pool); all cores if absent.
fn threads_flag() -> Option<usize> {
    let args: Vec<String> = std::env::args().collect();
    let at = args.iter().position(|a| a == "--threads")?;
    Some(args.get(at + 1).and_then(|n| n.parse().ok()).expect("--threads takes a number"))
}

fn main() {
    let threads = threads_flag();
    if let Some(n) = threads {
        rayon::ThreadPoolBuilder::new().num_threads(n).build_global().expect("the first rayon pool");
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let filter: Vec<String> = args
        .iter()
        .enumerate()
        .filter(|(k, a)| !a.starts_with("--") && (*k == 0 || args[k - 1] != "--threads"))
        .map(|(_, a)| a.clone())
        .collect();
    let wanted = |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = threads.unwrap_or(cores);
    println!("kiln benchmarks: medians, {cores} cores, {threads} threads\n");
    if wanted("matmul") {
        println!(
            "| matmul n x n x n, f32, compiled plan on prepared buffers, {threads} threads | GFLOP/s |\n| --- | --- |"
        );
        for n in [256, 512, 1024, 2048] {
            println!("| {n} | {:.1} |", matmul(n));
        }
        println!();
    }
    if wanted("bandwidth") || wanted("chain") {
        let n = 16 << 20;
        let (copy, scale) = bandwidth(n);
        let best = copy.max(scale);
        println!("| 16M f32, x in and y out | GB/s | ms | share of the faster probe |\n| --- | --- | --- | --- |");
        println!("| copy probe (`copy_from_slice`, 1 thread) | {copy:.2} | | {:.0}% |", 100.0 * copy / best);
        println!(
            "| scale probe (`y = 1.5 x` in Rust, {threads} threads) | {scale:.2} | | {:.0}% |",
            100.0 * scale / best
        );
        for (what, text) in [("`1.5 x`", scale_ir(n)), ("relu(a*x + b) * sigmoid(x)", chain_ir(n))] {
            let (rate, t, kernels) = elementwise(&text, n);
            println!(
                "| kiln JIT, {what} ({kernels} kernel{}) | {rate:.2} | {:.1} | {:.0}% |",
                if kernels == 1 { "" } else { "s" },
                t.as_secs_f64() * 1e3,
                100.0 * rate / best
            );
        }
        println!();
    }
    if wanted("step") {
        println!(
            "| training step, batch 256 | JIT session ms | `Jit::run` ms | JIT kernels alone ms | interpreter ms |\n\
             | --- | --- | --- | --- | --- |"
        );
        for example in ["softmax_regression.kiln", "mlp.kiln"] {
            let [session, run, kernels] = step_jit(example);
            println!("| {example} | {session:.2} | {run:.2} | {kernels:.2} | {:.2} |", step_interpreted(example));
        }
        println!();
    }
    if filter.iter().any(|f| f == "jit-steps") {
        // The MLP's and LeNet's steps in a JIT session (old and new binaries alternate).
        for example in ["mlp.kiln", "lenet.kiln"] {
            let [session, _, kernels] = step_jit(example);
            println!("| {example} step ms: JIT session | {session:.3} | kernels alone | {kernels:.3} |");
        }
    }
    if filter.iter().any(|f| f == "jit-step") {
        // The MLP step alone: for profilers, and for `peers.py`'s rounds.
        let [session, run, kernels] = step_jit("mlp.kiln");
        println!(
            "| mlp.kiln step ms: JIT session | {session:.3} | Jit::run | {run:.3} | kernels alone | {kernels:.3} |"
        );
    }
    if wanted("conv") {
        conv(256);
    }
    if filter.iter().any(|f| f == "cnn") {
        cnn_steps();
    }
    if filter.iter().any(|f| f == "rnn") {
        rnn_steps(&["rnn_lm.kiln", "gru_lm.kiln", "lstm_lm.kiln"], &["32", "128"]);
    }
    if filter.iter().any(|f| f == "transformer-step") {
        // The Transformer's step at the book's batch of 128, for `translation.py --bench`.
        let (m, updates, params, inputs) = training_step_at("transformer.kiln", &[], 128);
        let jit = kiln::jit::Jit::new(&m);
        let mut session = jit.session(params);
        let t = median(5, || drop(session.run_updating("train_step", &inputs, &updates).expect("runs")));
        println!("| transformer.kiln step ms | {:.2} |", t.as_secs_f64() * 1e3);
    }
    if filter.iter().any(|f| f == "gru-step") {
        // The GRU language model's step alone, for `language_models.py --bench`.
        rnn_steps(&["gru_lm.kiln"], &["32"]);
    }
    if let Some(at) = args.iter().position(|a| a == "profile-parts") {
        let arg = |k: usize| args.get(at + k).cloned();
        let path = arg(1).expect("profile-parts FILE [FUNCTION [BATCH [RUNS]]]");
        let function = arg(2).unwrap_or_else(|| "train_step".into());
        let batch = arg(3).map_or(128, |b| b.parse().expect("a batch size"));
        let runs = arg(4).map_or(10, |r| r.parse().expect("a number of runs"));
        profile_parts(&path, &function, batch, runs);
        return;
    }
    if filter.iter().any(|f| f == "gemm-crates") {
        gemm_crates();
    }
    if filter.iter().any(|f| f == "profile-cnn") {
        profile_at("batchnorm_lenet.kiln", &[], 128, 20);
        profile_at("resnet.kiln", &[("size", "28")], 128, 3);
    }
    if wanted("optimize") {
        optimize();
    }
    if filter.iter().any(|f| f == "profile") {
        profile("softmax_regression.kiln");
        profile("mlp.kiln");
        profile("lenet.kiln");
    }
    if wanted("compile") {
        println!("| JIT compile time (lower + Cranelift), N = 256 | ms | kernels |\n| --- | --- | --- |");
        for example in [
            "examples/linear_regression.kiln",
            "examples/softmax_regression.kiln",
            "examples/mlp.kiln",
            "examples/lenet.kiln",
        ] {
            let (ms, kernels) = compile_time(example);
            println!("| {example} | {ms:.1} | {kernels} |");
        }
    }
}
