//! Text for language models, prepared as the book prepares "The Time
//! Machine" (D2L sections 9.2 and 9.3): every run of characters that are
//! not ASCII letters becomes one space, letters are lower-cased, and each
//! character is a token. The vocabulary is the sorted set of the tokens
//! and `<unk>` (the book's `Vocab`: 28 tokens, space first). The examples
//! are the corpus' subsequences of `steps` tokens at every offset, each
//! with the same subsequence one token later as its targets; the first
//! 10,000 train and the next 5,000 validate (the book's `TimeMachine`).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use crate::idx::DataError;

/// The unknown token: what a character outside the vocabulary becomes.
pub const UNKNOWN: &str = "<unk>";

/// Tokens and their indices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vocab {
    tokens: Vec<String>,
    index: HashMap<String, usize>,
}

impl Vocab {
    /// The sorted set of `tokens` and `<unk>`.
    pub fn new<'a>(tokens: impl IntoIterator<Item = &'a str>) -> Vocab {
        let set: BTreeSet<&str> = tokens.into_iter().chain([UNKNOWN]).collect();
        Vocab::from_list(set.into_iter().map(str::to_string).collect())
    }

    /// A vocabulary of these tokens in this order (as saved beside a model).
    pub fn from_list(tokens: Vec<String>) -> Vocab {
        let index = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i)).collect();
        Vocab { tokens, index }
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }

    /// The index of `token`, or of `<unk>`.
    pub fn index(&self, token: &str) -> usize {
        self.index.get(token).or_else(|| self.index.get(UNKNOWN)).copied().unwrap_or(0)
    }

    pub fn token(&self, index: usize) -> &str {
        self.tokens.get(index).map_or(UNKNOWN, String::as_str)
    }
}

/// `text` preprocessed and tokenized by character with `vocab` (a trained
/// model's), `<unk>` for characters outside it.
pub fn encode(vocab: &Vocab, text: &str) -> Vec<i32> {
    preprocess(text).chars().map(|c| vocab.index(&c.to_string()) as i32).collect()
}

/// The book's preprocessing of text for a character model: runs of
/// non-letters to one space, lower case.
pub fn preprocess(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_gap = false;
    for c in text.chars() {
        if c.is_ascii_alphabetic() {
            out.push(c.to_ascii_lowercase());
            in_gap = false;
        } else if !in_gap {
            out.push(' ');
            in_gap = true;
        }
    }
    out
}

/// A character corpus as token indices, and its vocabulary.
#[derive(Clone, Debug)]
pub struct Corpus {
    pub tokens: Vec<i32>,
    pub vocab: Vocab,
}

impl Corpus {
    /// `text` preprocessed and tokenized by character.
    pub fn from_text(text: &str) -> Corpus {
        let clean = preprocess(text);
        let chars: Vec<String> = clean.chars().map(String::from).collect();
        let vocab = Vocab::new(chars.iter().map(String::as_str));
        let tokens = chars.iter().map(|c| vocab.index(c) as i32).collect();
        Corpus { tokens, vocab }
    }

    /// `text` tokenized with this corpus' vocabulary.
    pub fn encode(&self, text: &str) -> Vec<i32> {
        encode(&self.vocab, text)
    }

    /// The examples the book trains on: the subsequences of `steps` tokens
    /// starting at offsets `from..to` (as many as the corpus has), each
    /// followed by its targets, `steps` tokens one later.
    pub fn subsequences(&self, steps: usize, from: usize, to: usize) -> Sequences {
        let last = self.tokens.len().saturating_sub(steps);
        let (from, to) = (from.min(last), to.min(last).max(from.min(last)));
        let mut inputs = Vec::with_capacity((to - from) * steps);
        let mut targets = Vec::with_capacity((to - from) * steps);
        for i in from..to {
            inputs.extend_from_slice(&self.tokens[i..i + steps]);
            targets.extend_from_slice(&self.tokens[i + 1..i + steps + 1]);
        }
        Sequences { steps, inputs, targets }
    }
}

impl Corpus {
    /// The book's sequential partitioning (`seq_data_iter_sequential`) of
    /// the tokens before `end`: from `offset`, as many tokens as fill
    /// `batch` rows equally are laid out row after row, and batch `b` takes
    /// columns `b * steps .. (b + 1) * steps` of every row, so that row `r`
    /// of each batch continues row `r` of the batch before (a recurrent
    /// state carried from batch to batch follows one stretch of text).
    /// Returns the examples and the batches (in order) as their indices.
    pub fn sequential(&self, batch: usize, steps: usize, offset: usize, end: usize) -> (Sequences, Vec<Vec<usize>>) {
        let end = end.min(self.tokens.len());
        let batch = batch.max(1);
        let usable = end.saturating_sub(offset + 1) / batch * batch;
        let row = usable / batch;
        let count = row / steps.max(1);
        let mut seqs = Sequences { steps, inputs: Vec::new(), targets: Vec::new() };
        for b in 0..count {
            for r in 0..batch {
                let start = offset + r * row + b * steps;
                seqs.inputs.extend_from_slice(&self.tokens[start..start + steps]);
                seqs.targets.extend_from_slice(&self.tokens[start + 1..start + steps + 1]);
            }
        }
        let batches = (0..count).map(|b| (b * batch..(b + 1) * batch).collect()).collect();
        (seqs, batches)
    }
}

/// Examples of `steps` tokens each, with as many target tokens.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sequences {
    pub steps: usize,
    pub inputs: Vec<i32>,
    pub targets: Vec<i32>,
}

impl Sequences {
    pub fn len(&self) -> usize {
        self.inputs.len().checked_div(self.steps).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The inputs and the targets of the examples at `indices`, row after row.
    pub fn gather(&self, indices: &[usize]) -> (Vec<i32>, Vec<i32>) {
        let rows = |v: &[i32]| -> Vec<i32> {
            indices.iter().flat_map(|&i| v[i * self.steps..(i + 1) * self.steps].iter().copied()).collect()
        };
        (rows(&self.inputs), rows(&self.targets))
    }
}

/// How many subsequences the book trains on and validates on.
pub const TRAIN_SEQUENCES: usize = 10_000;
pub const VALID_SEQUENCES: usize = 5_000;

/// The text file of `path`: the file itself, or the one `.txt` file of a
/// directory.
pub fn text_file(path: &Path) -> Result<PathBuf, DataError> {
    if !path.is_dir() {
        return Ok(path.to_path_buf());
    }
    let entries = std::fs::read_dir(path).map_err(|e| DataError::new(path, format!("cannot list: {e}")))?;
    let mut texts: Vec<PathBuf> =
        entries.filter_map(|e| Some(e.ok()?.path())).filter(|p| p.extension().is_some_and(|x| x == "txt")).collect();
    texts.sort();
    match texts.len() {
        1 => Ok(texts.remove(0)),
        0 => Err(DataError::new(path, "no `.txt` file in this directory")),
        n => Err(DataError::new(path, format!("{n} `.txt` files in this directory: name the one to read"))),
    }
}

/// The text of `file`, which must be UTF-8 (an error names the line of
/// the first bad byte).
pub fn read_utf8(file: &Path) -> Result<String, DataError> {
    let bytes = crate::files::read_checked(file, crate::files::MAX_FILE_BYTES).map_err(|e| DataError::new(file, e))?;
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count() + 1;
        DataError::new(file, format!("line {line}: not valid UTF-8 (byte {at})"))
    })
}

/// Reads a text corpus (UTF-8) and tokenizes it by character; a corpus
/// with no letters is an error.
pub fn load_char_corpus(path: &Path) -> Result<Corpus, DataError> {
    let file = text_file(path)?;
    let text = read_utf8(&file)?;
    let corpus = Corpus::from_text(&text);
    if !corpus.tokens.iter().any(|&t| corpus.vocab.token(t as usize).chars().all(|c| c.is_ascii_alphabetic())) {
        return Err(DataError::new(&file, "no letters: a character model needs text"));
    }
    Ok(corpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_books_preprocessing_and_vocabulary() {
        let c = Corpus::from_text("The Time-Machine, 1895!\nby H. G. Wells");
        let text: String = c.tokens.iter().map(|&t| c.vocab.token(t as usize)).collect();
        assert_eq!(text, "the time machine by h g wells");
        assert_eq!(c.vocab.token(0), " ", "sorted: the space first");
        assert_eq!(c.vocab.token(1), UNKNOWN);
        assert_eq!(c.encode("Tq"), [c.vocab.index("t") as i32, 1], "q is not in this vocabulary: <unk>");
    }

    #[test]
    fn subsequences_are_shifted_by_one_token() {
        let c = Corpus::from_text("abcdef");
        let s = c.subsequences(3, 0, 100);
        assert_eq!(s.len(), 3, "offsets 0, 1 and 2 have a target after them");
        let (x, y) = s.gather(&[1]);
        let text = |v: &[i32]| v.iter().map(|&t| c.vocab.token(t as usize)).collect::<String>();
        assert_eq!((text(&x), text(&y)), ("bcd".into(), "cde".into()));
    }

    #[test]
    fn sequential_batches_continue_each_other_row_by_row() {
        let c = Corpus::from_text("abcdefghijklmnopqrstuvwxyz");
        // From offset 1, 24 tokens in 2 rows of 12: batches of 3 steps.
        let (s, batches) = c.sequential(2, 3, 1, 26);
        assert_eq!(batches, [vec![0, 1], vec![2, 3], vec![4, 5], vec![6, 7]]);
        let text = |v: &[i32]| v.iter().map(|&t| c.vocab.token(t as usize)).collect::<String>();
        let rows: Vec<(String, String)> = (0..8)
            .map(|i| {
                let (x, y) = s.gather(&[i]);
                (text(&x), text(&y))
            })
            .collect();
        assert_eq!(rows[0], ("bcd".into(), "cde".into()));
        assert_eq!(rows[1].0, "nop", "row 1 starts 12 tokens on");
        assert_eq!(rows[2].0, "efg", "batch 2 row 0 continues batch 1 row 0");
        assert_eq!(rows[7].0, "wxy");
        assert!(c.sequential(30, 3, 0, 26).1.is_empty(), "rows too short for one batch");
    }

    #[test]
    fn the_time_machine_has_the_books_28_tokens() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/timemachine");
        let c = load_char_corpus(&path).unwrap();
        assert_eq!(c.vocab.len(), 28);
        assert_eq!(c.tokens.len(), 173_428, "the book's corpus length after preprocessing");
        let first: String = c.tokens[..10].iter().map(|&t| c.vocab.token(t as usize)).collect();
        assert_eq!(first, "the time m");
    }

    #[test]
    fn bad_text_files_are_clear_errors() {
        let dir = std::env::temp_dir().join(format!("kiln-text-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bad = dir.join("bad.txt");
        std::fs::write(&bad, b"fine\nalso fine\n\xff\xfe").unwrap();
        let e = load_char_corpus(&bad).unwrap_err().to_string();
        assert!(e.contains("line 3: not valid UTF-8"), "{e}");
        let empty = dir.join("empty.txt");
        std::fs::write(&empty, "1234 !!").unwrap();
        let e = load_char_corpus(&empty).unwrap_err().to_string();
        assert!(e.contains("no letters"), "{e}");
        let e = load_char_corpus(&dir).unwrap_err().to_string();
        assert!(e.contains("2 `.txt` files"), "{e}");
    }
}
