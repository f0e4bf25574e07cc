//! Sentence pairs for machine translation, prepared as the book prepares
//! its English-French pairs (D2L section 10.5, `MTFraEng`): non-breaking
//! spaces become spaces, text is lower-cased, and a space goes before each
//! `,` `.` `!` `?` that lacks one; tokens are words, each sentence ends in
//! `<eos>` and is padded with `<pad>` or cut to `steps` tokens, and target
//! sentences start with `<bos>`. Each side's vocabulary holds the tokens
//! seen at least twice in its padded sentences, and `<unk>`, sorted (the
//! book's `Vocab(min_freq = 2)`). The book reads the first 641 lines and
//! trains on the first 512 pairs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::idx::DataError;
use crate::text::{UNKNOWN, Vocab};

pub const PAD: &str = "<pad>";
pub const BOS: &str = "<bos>";
pub const EOS: &str = "<eos>";

/// How many lines the book reads (`num_train + num_val` = 640, and its
/// loop stops after line 640) and how many pairs it trains on.
pub const BOOK_LINES: usize = 641;
pub const BOOK_TRAIN_PAIRS: usize = 512;

/// The book's preprocessing of a line of text.
pub fn preprocess(text: &str) -> String {
    let text = text.replace(['\u{202f}', '\u{a0}'], " ").to_lowercase();
    let mut out = String::with_capacity(text.len() + 8);
    let mut previous = None;
    for c in text.chars() {
        if matches!(c, ',' | '.' | '!' | '?') && previous.is_some_and(|p| p != ' ') {
            out.push(' ');
        }
        out.push(c);
        previous = Some(c);
    }
    out
}

/// A sentence's words and `<eos>`.
pub fn tokenize(sentence: &str) -> Vec<String> {
    sentence.split(' ').filter(|t| !t.is_empty()).map(str::to_string).chain([EOS.to_string()]).collect()
}

/// `tokens` cut to `steps` or padded to it with `<pad>`.
pub fn pad_or_trim(mut tokens: Vec<String>, steps: usize) -> Vec<String> {
    tokens.truncate(steps);
    tokens.resize(steps, PAD.to_string());
    tokens
}

/// The sorted set of `<unk>` and the tokens seen at least `min_freq` times.
pub fn vocab_with_min_freq<'a>(tokens: impl IntoIterator<Item = &'a str>, min_freq: usize) -> Vocab {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for t in tokens {
        *counts.entry(t).or_default() += 1;
    }
    let kept: BTreeSet<&str> =
        counts.into_iter().filter(|(_, n)| *n >= min_freq).map(|(t, _)| t).chain([UNKNOWN]).collect();
    Vocab::from_list(kept.into_iter().map(str::to_string).collect())
}

/// Translation pairs as arrays of token indices, `steps` per sentence.
#[derive(Clone, Debug)]
pub struct Pairs {
    pub steps: usize,
    pub source_vocab: Vocab,
    pub target_vocab: Vocab,
    /// Source sentences, `[pairs, steps]`.
    pub source: Vec<i32>,
    /// How many tokens of each source sentence are not `<pad>`.
    pub source_valid: Vec<i32>,
    /// The decoder's inputs: `<bos>` and the target sentence but its last
    /// token, `[pairs, steps]` (teacher forcing).
    pub target_in: Vec<i32>,
    /// The decoder's targets: the target sentence, `[pairs, steps]`.
    pub target_out: Vec<i32>,
    /// How many tokens of each target sentence are not `<pad>`.
    pub target_valid: Vec<i32>,
}

impl Pairs {
    pub fn len(&self) -> usize {
        self.source_valid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The pairs at `indices`, in that order (the vocabularies kept).
    pub fn select(&self, indices: &[usize]) -> Pairs {
        let t = self.steps;
        let rows =
            |v: &[i32]| -> Vec<i32> { indices.iter().flat_map(|&i| v[i * t..(i + 1) * t].iter().copied()).collect() };
        let each = |v: &[i32]| -> Vec<i32> { indices.iter().map(|&i| v[i]).collect() };
        Pairs {
            steps: t,
            source_vocab: self.source_vocab.clone(),
            target_vocab: self.target_vocab.clone(),
            source: rows(&self.source),
            source_valid: each(&self.source_valid),
            target_in: rows(&self.target_in),
            target_out: rows(&self.target_out),
            target_valid: each(&self.target_valid),
        }
    }

    /// A source sentence as the model reads it: preprocessed, tokenized,
    /// padded or cut, with its valid length.
    pub fn encode_source(&self, sentence: &str) -> (Vec<i32>, i32) {
        let tokens = pad_or_trim(tokenize(&preprocess(sentence)), self.steps);
        let valid = tokens.iter().filter(|t| *t != PAD).count() as i32;
        (tokens.iter().map(|t| self.source_vocab.index(t) as i32).collect(), valid)
    }
}

/// The pairs of `text` (`source<TAB>target` per line; other lines are
/// skipped, as the book skips them), from at most `lines` lines.
pub fn pairs_from_text(text: &str, steps: usize, lines: usize) -> Pairs {
    let clean = preprocess(text);
    let (mut sources, mut targets) = (Vec::new(), Vec::new());
    for line in clean.split('\n').take(lines) {
        let parts: Vec<&str> = line.split('\t').collect();
        if let [source, target] = parts[..] {
            sources.push(pad_or_trim(tokenize(source), steps));
            let mut t = vec![BOS.to_string()];
            t.extend(pad_or_trim(tokenize(target), steps));
            targets.push(t);
        }
    }
    let source_vocab = vocab_with_min_freq(sources.iter().flatten().map(String::as_str), 2);
    let target_vocab = vocab_with_min_freq(targets.iter().flatten().map(String::as_str), 2);
    let index = |v: &Vocab, tokens: &[String]| -> Vec<i32> { tokens.iter().map(|t| v.index(t) as i32).collect() };
    let valid = |tokens: &[String]| tokens.iter().filter(|t| *t != PAD).count() as i32;
    let mut pairs = Pairs {
        steps,
        source: Vec::new(),
        source_valid: Vec::new(),
        target_in: Vec::new(),
        target_out: Vec::new(),
        target_valid: Vec::new(),
        source_vocab,
        target_vocab,
    };
    for (s, t) in sources.iter().zip(&targets) {
        pairs.source.extend(index(&pairs.source_vocab, s));
        pairs.source_valid.push(valid(s));
        pairs.target_in.extend(index(&pairs.target_vocab, &t[..steps]));
        pairs.target_out.extend(index(&pairs.target_vocab, &t[1..]));
        pairs.target_valid.push(valid(&t[1..]));
    }
    pairs
}

/// Reads a pairs file (UTF-8): the book's first `lines` lines of it.
pub fn load_pairs(path: &Path, steps: usize, lines: usize) -> Result<Pairs, DataError> {
    let file = crate::text::text_file(path)?;
    let text = crate::text::read_utf8(&file)?;
    if steps == 0 {
        return Err(DataError::new(&file, "sentences of 0 steps hold nothing: give at least 1"));
    }
    let pairs = pairs_from_text(&text, steps, lines);
    if pairs.is_empty() {
        return Err(DataError::new(
            &file,
            format!("no `source<TAB>target` line in the first {lines} lines: is this a file of sentence pairs?"),
        ));
    }
    // Seen fewer than twice, a special token would be `<unk>`.
    for (side, vocab, specials) in
        [("source", &pairs.source_vocab, &[EOS, PAD][..]), ("target", &pairs.target_vocab, &[BOS, EOS, PAD][..])]
    {
        if let Some(missing) = specials.iter().find(|t| vocab.token(vocab.index(t)) != **t) {
            return Err(DataError::new(
                &file,
                format!("the {side} sentences hold `{missing}` fewer than twice: too few pairs to train on"),
            ));
        }
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_books_preprocessing() {
        assert_eq!(preprocess("Go.\tVa !"), "go .\tva !");
        assert_eq!(preprocess("Wow!\tÇa alors\u{202f}!"), "wow !\tça alors !");
        assert_eq!(preprocess("I lost, OK?"), "i lost , ok ?");
    }

    #[test]
    fn sentences_are_padded_cut_and_counted() {
        let text = "Go.\tVa !\nGo.\tMarche.\nHi.\tSalut !\nno tab here\nRun!\tCours !\n";
        let p = pairs_from_text(text, 4, 100);
        assert_eq!(p.len(), 4, "the line without a tab is skipped");
        let src = |i: usize| -> Vec<&str> {
            p.source[i * 4..(i + 1) * 4].iter().map(|&t| p.source_vocab.token(t as usize)).collect()
        };
        // `go` is seen twice: kept; `hi`, `run` and `!` once: unknown.
        assert_eq!(src(0), ["go", ".", "<eos>", "<pad>"]);
        assert_eq!(src(3), ["<unk>", "<unk>", "<eos>", "<pad>"]);
        assert_eq!(p.source_vocab.tokens(), [".", "<eos>", "<pad>", "<unk>", "go"]);
        assert_eq!(p.source_valid, [3, 3, 3, 3]);
        let tgt = |v: &[i32], i: usize| -> Vec<String> {
            v[i * 4..(i + 1) * 4].iter().map(|&t| p.target_vocab.token(t as usize).to_string()).collect()
        };
        assert_eq!(tgt(&p.target_in, 0), ["<bos>", "<unk>", "!", "<eos>"]);
        assert_eq!(tgt(&p.target_out, 0), ["<unk>", "!", "<eos>", "<pad>"]);
        assert_eq!(p.target_valid[0], 3);
        assert_eq!(p.encode_source("Go now, go!").1, 4, "cut to 4 steps");
    }

    #[test]
    fn the_shipped_pairs_as_the_book_reads_them() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/fra-eng/fra.txt");
        let p = load_pairs(&path, 9, BOOK_LINES).unwrap();
        assert_eq!(p.len(), BOOK_LINES);
        let (go, valid) = p.encode_source("go .");
        assert_eq!(valid, 3);
        assert_eq!(&p.source[..3], &go[..3], "the first pair is `go .`");
        for v in [&p.source_vocab, &p.target_vocab] {
            for t in [PAD, EOS, UNKNOWN] {
                assert_eq!(v.token(v.index(t)), t);
            }
        }
        assert_eq!(p.target_vocab.token(p.target_in[0] as usize), BOS);
    }

    #[test]
    fn bad_pair_files_are_clear_errors() {
        let dir = std::env::temp_dir().join(format!("kiln-pairs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("pairs.txt");
        std::fs::write(&path, "just one column\nand another\n").unwrap();
        let e = load_pairs(&path, 9, 10).unwrap_err().to_string();
        assert!(e.contains("no `source<TAB>target` line in the first 10 lines"), "{e}");
        std::fs::write(&path, "go.\tva !\n").unwrap();
        let e = load_pairs(&path, 9, 10).unwrap_err().to_string();
        assert!(e.contains("the source sentences hold `<eos>` fewer than twice"), "{e}");
        std::fs::write(&path, b"go.\tva !\n\xc3(\tx\n").unwrap();
        let e = load_pairs(&path, 9, 10).unwrap_err().to_string();
        assert!(e.contains("line 2: not valid UTF-8"), "{e}");
    }
}
