//! Diagnostics: every error the frontend reports, with a stable code, a
//! message, labelled source spans, and a hint where one helps. Rendering goes
//! through ariadne, with colours on a terminal and plain text otherwise.

use std::fmt;

use ariadne::{Color, Config, IndexType, Label, Report, ReportKind};

use crate::source::{SourceMap, Span};

/// A stable error code; `docs/dsl.md` lists them all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Code(pub &'static str);

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// One error about a program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub code: Code,
    pub message: String,
    /// The primary span with its label.
    pub span: Span,
    pub label: String,
    /// Further spans that explain the error (where a name was defined, ...).
    pub secondary: Vec<(Span, String)>,
    pub hint: Option<String>,
    pub notes: Vec<String>,
}

impl Diagnostic {
    pub fn new(code: Code, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            code,
            message: message.into(),
            span,
            label: String::new(),
            secondary: Vec::new(),
            hint: None,
            notes: Vec::new(),
        }
    }

    pub fn label(mut self, label: impl Into<String>) -> Diagnostic {
        self.label = label.into();
        self
    }

    pub fn also(mut self, span: Span, label: impl Into<String>) -> Diagnostic {
        self.secondary.push((span, label.into()));
        self
    }

    /// Adds a hint; an empty one is ignored.
    pub fn hint(mut self, hint: impl Into<String>) -> Diagnostic {
        let hint = hint.into();
        if !hint.is_empty() {
            self.hint = Some(hint);
        }
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Diagnostic {
        self.notes.push(note.into());
        self
    }
}

/// How to render diagnostics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// ANSI colours, for a terminal.
    Color,
    /// Plain text, for pipes, files and snapshots.
    Plain,
}

/// Renders diagnostics as a person reads them.
pub fn render(diagnostics: &[Diagnostic], sources: &SourceMap, style: Style) -> String {
    let mut out = Vec::new();
    let cache = ariadne::sources(sources.files().map(|(_, f)| (f.name.clone(), f.text.clone())));
    let mut cache = cache;
    let name = |span: Span| sources.file(span.file).name.clone();
    let colored = style == Style::Color;
    for d in diagnostics {
        let range = |s: Span| s.start as usize..s.end as usize;
        let config = Config::default().with_color(colored).with_index_type(IndexType::Byte);
        let mut report = Report::build(ReportKind::Error, (name(d.span), range(d.span)))
            .with_config(config)
            .with_code(d.code)
            .with_message(&d.message)
            .with_label(label(Label::new((name(d.span), range(d.span))), &d.label).with_color(Color::Red));
        for (span, text) in &d.secondary {
            report = report.with_label(label(Label::new((name(*span), range(*span))), text).with_color(Color::Blue));
        }
        if let Some(hint) = &d.hint {
            report = report.with_help(hint);
        }
        for note in &d.notes {
            report = report.with_note(note);
        }
        if report.finish().write(&mut cache, &mut out).is_err() {
            out.extend_from_slice(format!("error[{}]: {}\n", d.code, d.message).as_bytes());
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn label<S: ariadne::Span>(l: Label<S>, message: &str) -> Label<S> {
    if message.is_empty() { l } else { l.with_message(message) }
}
