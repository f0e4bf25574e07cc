//! Fuzzes IR text end to end: what parses and verifies runs, function by
//! function, on the reference interpreter and through the JIT (lowering,
//! the symbolic plan, Cranelift) at two batch sizes from one compilation.
//! No input may panic or abort, and where both backends succeed they agree
//! (`kiln::differential`, the same check as `tests/ir_differential.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(disagreement) = kiln::differential::run_text(text) {
        panic!("{disagreement}");
    }
});
