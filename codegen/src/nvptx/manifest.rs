//! The launch manifest written beside a plan's PTX: what a host program
//! needs to run it with the CUDA driver API. JSON, documented in
//! `docs/gpu.md`:
//!
//! - `plan`, `sm`, and `bindings` (the symbolic dimensions the plan was
//!   specialized to: every size below is for these values);
//! - `buffers`: id, role (`input N`, `output N`, `param NAME`, `temp`),
//!   dtype, elements and bytes (bools take a byte each);
//! - `status`: a 4-byte i32 word every entry takes last; zero it before a
//!   run, and after it 0 is success, 1 a computed index out of range, 2 an
//!   integer division by zero;
//! - `launches`, in the order to run them: kernel, entry, `threads` (the
//!   threads wanted along x, y, z), `grid_stride` (whether the grid's x is
//!   capped at 65 535 blocks, a grid-stride loop covering the rest), grid
//!   and block (x, y, z), static shared memory in bytes, and the arguments
//!   (buffer ids, then `status`), each a 16-byte aligned device pointer.

use kiln_ir::kernel::{BufferRole, Plan};
use serde_json::{Value, json};

use super::Sm;
use super::launch::launches;

/// A plan's launch manifest.
#[derive(Clone, Debug, PartialEq)]
pub struct Manifest(pub Value);

impl Manifest {
    pub fn of(plan: &Plan, sm: Sm) -> Manifest {
        let buffers: Vec<Value> = plan
            .buffers
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let role = match &b.role {
                    BufferRole::Input(n) => format!("input {n}"),
                    BufferRole::Output(n) => format!("output {n}"),
                    BufferRole::Param(name) => format!("param {name}"),
                    BufferRole::Temp => "temp".to_string(),
                };
                json!({
                    "id": format!("b{i}"),
                    "role": role,
                    "dtype": b.dtype.name(),
                    "elements": b.len,
                    "bytes": b.len * b.dtype.size_bytes() as u64,
                })
            })
            .collect();
        let mut list = Vec::new();
        for kernel in &plan.kernels {
            for l in launches(plan, kernel) {
                let mut args: Vec<String> = l.buffers().iter().map(|b| b.to_string()).collect();
                args.push("status".into());
                list.push(json!({
                    "kernel": kernel.name,
                    "entry": l.name,
                    "threads": l.threads,
                    "grid_stride": l.grid_stride(),
                    "grid": l.grid,
                    "block": l.block,
                    "shared_bytes": l.shared_bytes,
                    "args": args,
                }));
            }
        }
        Manifest(json!({
            "plan": plan.name,
            "sm": sm.name(),
            "bindings": {},
            "buffers": buffers,
            "status": { "dtype": "i32", "codes": { "0": "success", "1": "index out of range", "2": "integer division by zero" } },
            "launches": list,
        }))
    }

    /// Records the values of the symbolic dimensions the plan was built for.
    pub fn with_bindings<'a>(mut self, bindings: impl IntoIterator<Item = (&'a str, u64)>) -> Manifest {
        let map: serde_json::Map<String, Value> =
            bindings.into_iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
        self.0["bindings"] = Value::Object(map);
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
