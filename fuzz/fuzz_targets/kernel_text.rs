//! Fuzzes the kernel IR text parser and verifier: no input may panic, and a
//! plan that parses prints back to text that parses to the same plan.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(plan) = kiln_ir::kernel::parse_plan(text) {
        let printed = plan.to_string();
        assert_eq!(kiln_ir::kernel::parse_plan(&printed).as_ref(), Ok(&plan));
    }
});
