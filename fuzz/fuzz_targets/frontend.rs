//! Fuzzes the whole frontend (lexer, parser, checker, lowering) and the
//! diagnostic renderer: no input may panic, and an accepted program must
//! lower to IR that verifies.
#![no_main]

use kiln_frontend::{Options, SourceMap, Style, compile, render};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut sources = SourceMap::new();
    let root = sources.add("fuzz.kiln", None, text);
    match compile(&mut sources, root, &Options::default()) {
        Ok(program) => assert!(kiln_ir::verify_module(&program.module).is_ok(), "accepted program lowers to invalid IR"),
        Err(diagnostics) => {
            assert!(diagnostics.iter().all(|d| !d.code.0.starts_with("E08")), "internal error");
            let _ = render(&diagnostics, &sources, Style::Plain);
        }
    }
});
