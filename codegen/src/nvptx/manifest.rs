//! The launch manifest written beside a plan's PTX: what a host program
//! needs to run it with the CUDA driver API. JSON, documented in
//! `docs/gpu.md`:
//!
//! - `plan`, `sm`, and `bindings` (the values of the symbolic dimensions
//!   bound: every number below is for these values); for generic PTX
//!   (`Manifest::generic`) also `symbols`, `valid_for` (the sizes the PTX
//!   serves) and a formula of the symbols beside each size; for PTX
//!   specialized to the bindings, `specialized_because`;
//! - `buffers`: id, role (`input N`, `output N`, `param NAME`, `temp`),
//!   dtype, elements and bytes (bools take a byte each);
//! - `status`: a 4-byte i32 word every entry takes after its buffers (a
//!   generic entry then takes each symbol's value, an i64); zero it before a
//!   run, and after it 0 is success, 1 a computed index out of range, 2 an
//!   integer division by zero;
//! - `launches`, in the order to run them: kernel, entry, `threads` (the
//!   threads wanted along x, y, z), `grid_stride` (whether the grid's x is
//!   capped at 65 535 blocks, a grid-stride loop covering the rest), grid
//!   and block (x, y, z), static shared memory in bytes, and the arguments
//!   (buffer ids, then `status`, each a 16-byte aligned device pointer,
//!   then, generic, the symbols).

use kiln_ir::kernel::{BufferRole, Plan};
use serde_json::{Value, json};

use super::formula::Formula;
use super::generic::{GenericLaunch, GenericPlan, MODULUS};
use super::launch::{MAX_BLOCKS, grid_for};
use super::{PtxError, Sm};

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
    /// The manifest of a plan for one binding (numbers only; `bindings`
    /// is filled in by [`Manifest::with_bindings`]).
    pub fn of(plan: &Plan, sm: Sm) -> Result<Manifest, PtxError> {
        Ok(Manifest::build(&GenericPlan::fixed(plan)?, sm, false))
    }

    /// The manifest of a generic plan: every size also as a formula of the
    /// symbols (`elements_formula`, `bytes_formula`, `threads_formula`,
    /// `grid_formula`), the sizes it is valid for (`valid_for`), and the
    /// symbols' values as each entry's last arguments.
    pub fn generic(plan: &GenericPlan, sm: Sm) -> Manifest {
        Manifest::build(plan, sm, true)
    }

    /// Both manifests: the numbers at the plan's sizes, and with
    /// `formulas`, what [`Manifest::generic`] adds.
    fn build(plan: &GenericPlan, sm: Sm, formulas: bool) -> Manifest {
        let symbols = plan.symbol_names();
        let ns: Vec<u64> = plan.symbols.iter().map(|s| s.1).collect();
        let xs: Vec<i64> = ns.iter().map(|n| *n as i64).collect();
        let at = |f: &Formula| f.eval(&xs).unwrap_or(-1);
        let buffers: Vec<Value> = plan
            .buffers
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let bytes = b.len.scaled(b.dtype.size_bytes() as i64);
                let mut v = json!({
                    "id": format!("b{i}"),
                    "role": role_name(&b.role),
                    "dtype": b.dtype.name(),
                    "elements": at(&b.len),
                    "bytes": at(&bytes),
                });
                if formulas {
                    v["elements_formula"] = json!(b.len.render(&symbols));
                    v["bytes_formula"] = json!(bytes.render(&symbols));
                }
                v
            })
            .collect();
        let launches: Vec<Value> = plan
            .launches
            .iter()
            .map(|l| {
                let mut args: Vec<String> = l.buffers.iter().map(|b| b.to_string()).collect();
                args.push("status".into());
                args.extend(plan.symbols.iter().map(|(s, _)| s.clone()));
                let mut v = json!({
                    "kernel": l.kernel,
                    "entry": l.entry,
                    "threads": l.threads.iter().map(at).collect::<Vec<i64>>(),
                    "grid_stride": l.grid_stride,
                    "grid": l.grid(&ns).unwrap_or([0; 3]),
                    "block": l.block,
                    "shared_bytes": l.shared_bytes,
                    "args": args,
                });
                if formulas {
                    v["threads_formula"] = json!(l.threads.iter().map(|t| t.render(&symbols)).collect::<Vec<String>>());
                    v["grid_formula"] = json!((0..3).map(|k| grid_formula(l, k, &symbols)).collect::<Vec<String>>());
                }
                v
            })
            .collect();
        let mut manifest = json!({
            "plan": plan.name,
            "sm": sm.name(),
            "bindings": {},
            "buffers": buffers,
            "status": { "dtype": "i32", "codes": { "0": "success", "1": "index out of range", "2": "integer division by zero" } },
            "launches": launches,
        });
        if formulas {
            let bindings: serde_json::Map<String, Value> =
                plan.symbols.iter().map(|(s, n)| (s.clone(), json!(n))).collect();
            let valid_for: serde_json::Map<String, Value> = plan
                .symbols
                .iter()
                .map(|(s, n)| (s.clone(), json!({ "at_least": 1, "modulus": MODULUS, "residue": n % MODULUS })))
                .collect();
            manifest["bindings"] = Value::Object(bindings);
            manifest["symbols"] = json!(symbols);
            manifest["valid_for"] = Value::Object(valid_for);
        }
        Manifest(manifest)
    }

    /// Records the values of the symbolic dimensions the plan was built for.
    pub fn with_bindings<'a>(mut self, bindings: impl IntoIterator<Item = (&'a str, u64)>) -> Manifest {
        let map: serde_json::Map<String, Value> =
            bindings.into_iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
        self.0["bindings"] = Value::Object(map);
        self
    }

    /// Records why the PTX is specialized to its bindings rather than
    /// generic in the symbols (`specialized_because`); its sizes are then
    /// numbers only.
    pub fn specialized_because(mut self, why: &str) -> Manifest {
        self.0["specialized_because"] = json!(why);
        self
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

/// Axis `k` of a launch's grid as a formula of the symbols: the rule of
/// `launch::grid_for` written out (`min(ceil(64*N/256), 65535)`).
fn grid_formula(l: &GenericLaunch, k: usize, symbols: &[&str]) -> String {
    let t = &l.threads[k];
    if let Some(c) = t.as_constant() {
        return grid_for(l.grid_stride, [c.max(0) as u64; 3], l.block)[k].to_string();
    }
    let text = t.render(symbols);
    let operand = if text.contains([' ', '/']) { format!("({text})") } else { text };
    let ceil = format!("ceil({operand}/{})", l.block[k]);
    if l.grid_stride && k == 0 { format!("min({ceil}, {MAX_BLOCKS})") } else { ceil }
}
