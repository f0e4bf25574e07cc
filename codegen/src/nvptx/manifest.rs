//! The launch manifest written beside a plan's PTX: what a host program
//! needs to run it with the CUDA driver API. JSON, documented in
//! `docs/gpu.md`:
//!
//! - `plan`, `sm`, `symbols` (each size symbol, in the order of the entries'
//!   size arguments, with its least value `at_least` and the `hint` the
//!   plan's choices were taken at) and `bindings` (the hints by name);
//! - `buffers`: id, role (`input N`, `output N`, `param NAME`, `temp`),
//!   dtype, `elements` and `bytes` as the kernel IR's size expressions
//!   (`784*N`; bools take a byte each) and their values at the hints;
//! - `status`: a 4-byte i32 word every entry takes after its buffers (then
//!   each symbol's value, an i64); zero it before a run, and after it 0 is
//!   success, 1 a computed index out of range, 2 an integer division by
//!   zero;
//! - `launches`, in the order to run them: kernel, entry, `threads` (the
//!   threads wanted along x, y, z, as size expressions), `grid_stride`
//!   (whether the grid's x is capped at 65 535 blocks, a grid-stride loop
//!   covering the rest), `grid` (the rule, `min(ceil((784*N)/256), 65535)`)
//!   and its value at the hints, block (x, y, z), static shared memory in
//!   bytes, and the arguments (buffer ids, then `status`, each a 16-byte
//!   aligned device pointer, then the symbols).

use kiln_ir::Bindings;
use kiln_ir::kernel::{BufferRole, Plan, Size, hints};
use serde_json::{Value, json};

use super::Sm;
use super::launch::{Launch, MAX_BLOCKS, launches};

/// A plan's launch manifest.
#[derive(Clone, Debug, PartialEq)]
pub struct Manifest(pub Value);

/// How the manifest names a buffer's role.
fn role_name(role: &BufferRole) -> String {
    match role {
        BufferRole::Input(n) => format!("input {n}"),
        BufferRole::Output(n) => format!("output {n}"),
        BufferRole::Param(name) => format!("param {name}"),
        BufferRole::Temp => "temp".to_string(),
    }
}

impl Manifest {
    /// The manifest of a plan: sizes as expressions of its symbols, and
    /// their values at the plan's hints.
    pub fn of(plan: &Plan, sm: Sm) -> Manifest {
        let hint: Bindings = hints(&plan.symbols);
        let at = |s: &Size| s.eval(&hint).map_or(json!(null), |v| json!(v));
        let buffers: Vec<Value> = plan
            .buffers
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let bytes = b.len.scale(b.dtype.size_bytes() as i64);
                json!({
                    "id": format!("b{i}"),
                    "role": role_name(&b.role),
                    "dtype": b.dtype.name(),
                    "elements": b.len.to_string(),
                    "bytes": bytes.to_string(),
                    "elements_at_hint": at(&b.len),
                    "bytes_at_hint": at(&bytes),
                })
            })
            .collect();
        let mut entries = Vec::new();
        for kernel in &plan.kernels {
            for l in launches(plan, kernel) {
                let mut args: Vec<String> = l.buffers().iter().map(|b| b.to_string()).collect();
                args.push("status".into());
                args.extend(plan.symbols.iter().map(|s| s.symbol.to_string()));
                entries.push(json!({
                    "kernel": kernel.name,
                    "entry": l.name,
                    "threads": l.threads.iter().map(|t| t.to_string()).collect::<Vec<String>>(),
                    "grid_stride": l.grid_stride(),
                    "grid": (0..3).map(|k| grid_rule(&l, k)).collect::<Vec<String>>(),
                    "grid_at_hint": l.grid_at(&hint).unwrap_or([0; 3]),
                    "block": l.block,
                    "shared_bytes": l.shared_bytes,
                    "args": args,
                }));
            }
        }
        let symbols: Vec<Value> = plan
            .symbols
            .iter()
            .map(|s| json!({ "name": s.symbol.to_string(), "at_least": s.min, "hint": s.hint }))
            .collect();
        let bindings: serde_json::Map<String, Value> =
            plan.symbols.iter().map(|s| (s.symbol.to_string(), json!(s.hint))).collect();
        Manifest(json!({
            "plan": plan.name,
            "sm": sm.name(),
            "symbols": symbols,
            "bindings": bindings,
            "buffers": buffers,
            "status": { "dtype": "i32", "codes": { "0": "success", "1": "index out of range", "2": "integer division by zero" } },
            "launches": entries,
        }))
    }

    /// The entries, in launch order.
    pub fn entries(&self) -> Vec<String> {
        self.0["launches"]
            .as_array()
            .map(|l| l.iter().filter_map(|x| x["entry"].as_str().map(String::from)).collect())
            .unwrap_or_default()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(&self.0).unwrap_or_default()
    }
}

/// Axis `k` of a launch's grid as an expression of the symbols: the rule
/// of `launch::grid_for` written out (`min(ceil((784*N)/256), 65535)`).
fn grid_rule(l: &Launch<'_>, k: usize) -> String {
    let t = &l.threads[k];
    if let Some(c) = t.as_const() {
        return super::launch::grid_for(l.grid_stride(), [c.max(0) as u64; 3], l.block)[k].to_string();
    }
    let ceil = format!("max(ceil(({t})/{}), 1)", l.block[k]);
    if l.grid_stride() && k == 0 { format!("min({ceil}, {MAX_BLOCKS})") } else { ceil }
}
