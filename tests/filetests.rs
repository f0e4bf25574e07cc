//! The file-driven tests: every program in `filetests/ok/` compiles and its
//! lowered IR is snapshotted; every program in `filetests/err/` fails and its
//! rendered diagnostics are snapshotted; every `.ir` file in
//! `filetests/ir_err/` fails to parse or verify on the line marked
//! `// error: <text>` with a message containing that text.

use std::path::Path;

use kiln_frontend::{Options, SourceMap, Style};

/// Compiles one file as the CLI does, naming it by its file name only so
/// that snapshots do not depend on where the repository is checked out.
fn compile(path: &Path) -> (SourceMap, Result<kiln_frontend::Program, Vec<kiln_frontend::Diagnostic>>) {
    let mut sources = SourceMap::new();
    let text = std::fs::read_to_string(path).expect("a filetest is readable");
    let name = path.file_name().expect("a file name").to_string_lossy().to_string();
    let root = sources.add(name, Some(std::fs::canonicalize(path).expect("a real path")), text);
    let result = kiln_frontend::compile(&mut sources, root, &Options::default());
    (sources, result)
}

#[test]
fn ok_programs_lower_to_verified_ir() {
    insta::glob!("filetests/ok/*.kiln", |path| {
        let (sources, result) = compile(path);
        let program = match result {
            Ok(p) => p,
            Err(d) => {
                panic!("{} should compile:\n{}", path.display(), kiln_frontend::render(&d, &sources, Style::Plain))
            }
        };
        kiln_ir::verify_module(&program.module).expect("lowered IR verifies");
        let (cleaned, _) = kiln_passes::Pipeline::cleanup().run(&program.module).expect("cleanup verifies");
        let text = cleaned.to_string();
        assert_eq!(kiln_ir::parse_module(&text).expect("printed IR parses"), cleaned, "IR text round-trips");
        insta::assert_snapshot!(text);
    });
}

#[test]
fn err_programs_report_diagnostics() {
    let mut count = 0;
    insta::glob!("filetests/err/*.kiln", |path| {
        count += 1;
        let (sources, result) = compile(path);
        let diagnostics = match result {
            Ok(_) => panic!("{} should fail to compile", path.display()),
            Err(d) => d,
        };
        for d in &diagnostics {
            assert!(d.code.0.starts_with('E') && d.code.0.len() == 5, "stable code: {}", d.code);
            assert!(!d.message.is_empty() && !d.label.is_empty(), "message and label in {}", path.display());
            assert!(!d.code.0.starts_with("E08"), "internal error in {}: {}", path.display(), d.message);
        }
        insta::assert_snapshot!(kiln_frontend::render(&diagnostics, &sources, Style::Plain));
    });
    assert!(count >= 40, "the error corpus has {count} programs, fewer than 40");
}

#[test]
fn ir_errors_point_at_the_marked_line() {
    insta::glob!("filetests/ir_err/*.ir", |path| {
        let text = std::fs::read_to_string(path).unwrap();
        let (line, expected) = text
            .lines()
            .enumerate()
            .find_map(|(i, l)| l.split_once("// error: ").map(|(_, e)| (i + 1, e.trim().to_string())))
            .expect("an `// error:` marker");
        let error = kiln_ir::parse_module(&text).expect_err("the IR is invalid");
        assert_eq!(error.line, line, "{}: error on the wrong line: {error}", path.display());
        assert!(
            error.message.contains(&expected),
            "{}: `{}` does not contain `{expected}`",
            path.display(),
            error.message
        );
    });
}
