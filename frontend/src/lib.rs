//! The kiln language: lexing, parsing, name resolution, dtype and shape
//! checking, and lowering to graph IR.
//!
//! Invariant: the frontend owns every user-facing error about a program. A
//! program it accepts lowers to IR that verifies, and no input makes it
//! panic (a fuzz target and a property test hold it to that).

pub mod ast;
mod check;
pub mod diag;
pub mod lexer;
pub mod parser;
pub mod source;
mod train;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

pub use check::{Options, Program};
pub use diag::{Code, Diagnostic, Style, render};
pub use source::{FileId, SourceMap, Span};
pub use train::{Optimizer, TrainSpec};

/// The prelude's source, compiled into kiln.
pub const PRELUDE: &str = include_str!("../prelude/prelude.kiln");

/// Reads, checks and lowers the file at `path` and the files it `use`s.
/// The source map holds every file read, for rendering diagnostics.
pub fn compile_path(path: &Path, options: &Options) -> (SourceMap, Result<Program, Vec<Diagnostic>>) {
    let mut sources = SourceMap::new();
    let text = read_source(path);
    let name = path.display().to_string();
    match text {
        Ok(text) => {
            let root = sources.add(name, Some(canonical(path)), text);
            let result = compile(&mut sources, root, options);
            (sources, result)
        }
        Err(e) => {
            let root = sources.add(name.clone(), None, String::new());
            let d = Diagnostic::new(
                Code("E0205"),
                Span::new(root, 0, 0),
                format!("cannot read `{name}`: {}", io_reason(&e)),
            );
            (sources, Err(vec![d]))
        }
    }
}

/// Checks and lowers `root`, which is already in `sources`.
pub fn compile(sources: &mut SourceMap, root: FileId, options: &Options) -> Result<Program, Vec<Diagnostic>> {
    // Parsing and checking recurse as deep as the program nests (up to the
    // parser's limit): on a thread of its own with a stack sized for that,
    // whatever the caller's thread has.
    std::thread::scope(|scope| {
        let compiling = std::thread::Builder::new()
            .stack_size(COMPILE_STACK)
            .spawn_scoped(scope, || compile_here(sources, root, options));
        match compiling {
            Ok(thread) => thread.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Err(e) => Err(vec![Diagnostic::new(
                Code("E0208"),
                Span::new(root, 0, 0),
                format!("cannot start a thread to compile on: {e}"),
            )]),
        }
    })
}

/// The stack of the thread [`compile`] runs on: room for the deepest
/// program the parser accepts (`parser::MAX_DEPTH` levels).
const COMPILE_STACK: usize = 256 << 20;

fn compile_here(sources: &mut SourceMap, root: FileId, options: &Options) -> Result<Program, Vec<Diagnostic>> {
    let mut diagnostics = Vec::new();
    let mut files = Vec::new();
    load(sources, root, &mut files, &mut diagnostics);
    let prelude = sources.add("<prelude>", None, PRELUDE);
    let prelude_ast = parse_file(sources, prelude, &mut diagnostics);
    if !diagnostics.is_empty() {
        return Err(diagnostics);
    }
    let mut items = check::Items { fns: HashMap::new(), models: HashMap::new(), trains: Vec::new(), root_file: root };
    collect(&prelude_ast, &mut items, &mut HashMap::new(), &mut diagnostics);
    let mut seen = HashMap::new();
    for (_, file) in &files {
        collect(file, &mut items, &mut seen, &mut diagnostics);
    }
    if !diagnostics.is_empty() {
        return Err(diagnostics);
    }
    let user_models: Vec<String> = files
        .iter()
        .filter(|(id, _)| *id == root)
        .flat_map(|(_, f)| f.items.iter())
        .filter_map(|i| if let ast::Item::Model(m) = i { Some(m.name.name.clone()) } else { None })
        .collect();
    check::check_program(sources, &items, &user_models, options)
}

fn parse_file(sources: &SourceMap, id: FileId, diagnostics: &mut Vec<Diagnostic>) -> ast::File {
    let text = &sources.file(id).text;
    let tokens = lexer::lex(id, text, diagnostics);
    parser::parse(tokens, text, diagnostics)
}

/// Parses `id` and, depth first, every file it `use`s (each once).
fn load(sources: &mut SourceMap, id: FileId, files: &mut Vec<(FileId, ast::File)>, diagnostics: &mut Vec<Diagnostic>) {
    let errors_before = diagnostics.len();
    let file = parse_file(sources, id, diagnostics);
    if diagnostics.len() > errors_before {
        // A file with syntax errors may have a mangled `use`: follow none.
        files.push((id, file));
        return;
    }
    let dir = sources.file(id).path.as_ref().and_then(|p| p.parent().map(Path::to_path_buf)).unwrap_or_default();
    let uses: Vec<ast::Use> =
        file.items.iter().filter_map(|i| if let ast::Item::Use(u) = i { Some(u.clone()) } else { None }).collect();
    files.push((id, file));
    for u in uses {
        let path = dir.join(&u.path);
        let key = canonical(&path);
        if sources.find_path(&key).is_some() {
            continue;
        }
        match read_source(&path) {
            Ok(text) => {
                let child = sources.add(u.path.clone(), Some(key), text);
                load(sources, child, files, diagnostics);
            }
            Err(e) => diagnostics.push(
                Diagnostic::new(Code("E0205"), u.span, format!("cannot read `{}`: {}", u.path, io_reason(&e)))
                    .label("this file could not be read")
                    .hint("`use` paths are relative to the file that contains them"),
            ),
        }
    }
}

/// The most bytes a source file may hold (16 MiB).
pub const MAX_SOURCE_BYTES: u64 = 16 << 20;

/// The text of the source file at `path`: a regular file (not a device or
/// a FIFO, which could be read forever) of at most [`MAX_SOURCE_BYTES`].
pub fn read_source(path: &Path) -> std::io::Result<String> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file"));
    }
    if meta.len() > MAX_SOURCE_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} bytes, more than the {MAX_SOURCE_BYTES} a source file may hold", meta.len()),
        ));
    }
    std::fs::read_to_string(path)
}

/// An I/O error's reason without the OS error number.
fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// Every parameter list of `item` (a function's, a model's, a model
/// method's, a train block's functions') names each parameter once: a
/// repeated name is E0202 at its second occurrence, never a lowering that
/// declares one input twice or a model argument that silently shadows another.
fn params_are_distinct(item: &ast::Item, diagnostics: &mut Vec<Diagnostic>) {
    let mut check = |params: &[ast::FnParam], owner: String| {
        let mut seen: HashMap<&str, Span> = HashMap::new();
        for p in params {
            if let Some(previous) = seen.insert(&p.name.name, p.name.span) {
                diagnostics.push(
                    Diagnostic::new(
                        Code("E0202"),
                        p.name.span,
                        format!("parameter `{}` of {owner} is declared twice", p.name.name),
                    )
                    .label("declared again here")
                    .also(previous, "first declared here"),
                );
            }
        }
    };
    match item {
        ast::Item::Fn(f) => check(&f.params, format!("function `{}`", f.name.name)),
        ast::Item::Model(m) => {
            check(&m.params, format!("model `{}`", m.name.name));
            for member in &m.members {
                if let ast::Member::Fn(f) = member {
                    check(&f.params, format!("`{}.{}`", m.name.name, f.name.name));
                }
            }
        }
        ast::Item::Train(t) => {
            for f in &t.fns {
                check(&f.params, format!("`{}` of the train block", f.name.name));
            }
        }
        ast::Item::Use(_) => {}
    }
}

fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Adds a file's definitions. Names defined twice across the user's files
/// are errors; a user's definition replaces a prelude one of the same name.
fn collect(
    file: &ast::File,
    items: &mut check::Items,
    seen: &mut HashMap<String, Span>,
    diagnostics: &mut Vec<Diagnostic>,
) {
    for item in &file.items {
        params_are_distinct(item, diagnostics);
        let name = match item {
            ast::Item::Fn(f) => &f.name,
            ast::Item::Model(m) => &m.name,
            ast::Item::Train(t) => {
                items.trains.push(t.clone());
                continue;
            }
            ast::Item::Use(_) => continue,
        };
        if let Some(previous) = seen.get(&name.name) {
            diagnostics.push(
                Diagnostic::new(Code("E0202"), name.span, format!("`{}` is defined twice", name.name))
                    .label("defined again here")
                    .also(*previous, "first defined here"),
            );
            continue;
        }
        seen.insert(name.name.clone(), name.span);
        match item {
            ast::Item::Fn(f) => {
                items.models.remove(&f.name.name);
                items.fns.insert(f.name.name.clone(), Rc::new(f.clone()));
            }
            ast::Item::Model(m) => {
                items.fns.remove(&m.name.name);
                items.models.insert(m.name.name.clone(), Rc::new(m.clone()));
            }
            _ => {}
        }
    }
}
