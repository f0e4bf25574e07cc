//! Fuzzes the IR text parser and verifier: no input may panic, and what
//! parses prints back to text that parses to the same module.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(module) = kiln_ir::parse_module(text) {
        let printed = module.to_string();
        assert_eq!(kiln_ir::parse_module(&printed).as_ref(), Ok(&module));
    }
});
