//! The `--help` text, made from [`FLAGS`] and nothing else, so it lists exactly the flags
//! the parser reads; the README's flags block is its OPTIONS, word for word (a test here
//! checks). It owns how a flag is shown (`-h, --help`, `[at most 64 MiB; default: 65536]`)
//! and the wrapping to [`USAGE_COLUMNS`].

use super::flags::{Flag, Kind, FLAGS, SECONDS};

/// `--help` is wrapped to this many columns.
pub const USAGE_COLUMNS: usize = 92;

/// The `--help` text, made from [`FLAGS`] and nothing else, so it lists exactly the flags
/// the parser reads. Its OPTIONS lines are the README's flags block, word for word (a test
/// checks).
pub fn usage() -> String {
    let mut text = String::from(
        "comet-chat: a Comet (HTTP long-polling) chat server on one mio event loop\n\n\
         USAGE: comet-chat [OPTIONS]\n       \
         comet-chat token --secret-file PATH --sub NAME [--rooms ROOM,ROOM|*] [--ttl 1h]\n\n\
         OPTIONS:\n",
    );
    // Every description starts in one column, just past the widest `--flag VALUE`.
    let widest = FLAGS.iter().map(|flag| flag.spelled().len()).max();
    let column = 2 + widest.unwrap_or(0) + 2;
    for flag in FLAGS {
        let mut words: Vec<String> = flag.help.split_whitespace().map(str::to_owned).collect();
        words.extend(flag.range_and_default());
        wrap(&mut text, format!("  {}", flag.spelled()), column, &words);
    }
    text.push('\n');
    let note = format!(
        "Times (SECS) are seconds from {} to {}, fractions allowed; counts and sizes (N, \
         BYTES) are whole numbers from 1 up to the ceiling shown, or within the range shown; \
         anything else stops start-up.",
        SECONDS.start(),
        SECONDS.end()
    );
    let words: Vec<String> = note.split_whitespace().map(str::to_owned).collect();
    wrap(&mut text, String::new(), 0, &words);
    text
}

/// Appends `first`, then `words` from column `indent` on, breaking lines before
/// [`USAGE_COLUMNS`] and starting each further line `indent` columns in. A "word" may hold
/// spaces (the bracket with a flag's range and default) and is kept on one line, unless no
/// line could hold it.
fn wrap(text: &mut String, first: String, indent: usize, words: &[String]) {
    let words = words.iter().flat_map(|word| {
        let fits = indent + word.len() <= USAGE_COLUMNS;
        let pieces: Vec<&str> = if fits {
            vec![word]
        } else {
            word.split_whitespace().collect()
        };
        pieces
    });
    let mut line = format!("{first:<indent$}");
    if line.len() > indent {
        // No room to line up: one space after `first` instead.
        line.push(' ');
    }
    let mut line_is_empty = true;
    for word in words {
        if !line_is_empty && line.len() + 1 + word.len() > USAGE_COLUMNS {
            text.push_str(&line);
            text.push('\n');
            line = " ".repeat(indent);
            line_is_empty = true;
        }
        if !line_is_empty {
            line.push(' ');
        }
        line.push_str(word);
        line_is_empty = false;
    }
    text.push_str(line.trim_end());
    text.push('\n');
}

impl Flag {
    /// `--max-body BYTES`, `--no-www`, `-h, --help`: the flag as `--help` shows it.
    pub fn spelled(&self) -> String {
        let mut spelled = match self.short {
            Some(letter) => format!("-{letter}, --{}", self.long),
            None => format!("--{}", self.long),
        };
        if !self.value.is_empty() {
            spelled.push(' ');
            spelled.push_str(self.value);
        }
        spelled
    }

    /// `[at most 64 MiB; default: 65536]`: what `--help` says after the help line, if
    /// anything.
    pub fn range_and_default(&self) -> Option<String> {
        let mut parts = Vec::new();
        if let Kind::Number(bounds, _) = self.kind {
            parts.push(bounds.shown());
        }
        match (self.default, self.default_note) {
            (None, "") => {}
            (None, note) => parts.push(format!("default: {note}")),
            (Some(value), "") => parts.push(format!("default: {value}")),
            (Some(value), note) => parts.push(format!("default: {value}, {note}")),
        }
        (!parts.is_empty()).then(|| format!("[{}]", parts.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RESERVED_DESCRIPTORS;

    /// The README's flags block is the `--help` text's OPTIONS, so neither can drift.
    #[test]
    fn readme_flags_block_is_the_usage_text() {
        let readme = include_str!("../../README.md");
        let block = readme
            .split("## Flags\n\n```\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .expect("README has a flags block");
        let options: String = usage()
            .split("OPTIONS:\n")
            .nth(1)
            .unwrap()
            .lines()
            .take_while(|line| !line.is_empty())
            .map(|line| format!("{}\n", &line[2..]))
            .collect();
        assert_eq!(block, options);
    }
    /// Every entry in the table shows up in `--help`: its spelling, its help line, its range
    /// and its default, each flag starting exactly one line, in table order.
    #[test]
    fn every_flag_is_in_the_usage_text() {
        let text = usage();
        let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
        for flag in FLAGS {
            let help = flag.help.split_whitespace().collect::<Vec<_>>().join(" ");
            let line = format!("{} {help}", flag.spelled());
            assert!(flat.contains(&line), "{line}");
            if let Some(value) = flag.default {
                assert!(flat.contains(&format!("default: {value}")), "{}", flag.long);
            }
            assert!(flat.contains(flag.default_note), "{}", flag.long);
            if let Kind::Number(bounds, _) = flag.kind {
                assert!(flat.contains(&bounds.shown()), "{}", flag.long);
            }
        }
        let starts: Vec<&str> = text.lines().filter(|l| l.starts_with("  -")).collect();
        assert_eq!(starts.len(), FLAGS.len(), "{starts:#?}");
        for (line, flag) in starts.iter().zip(FLAGS) {
            assert!(
                line[2..].starts_with(&format!("{} ", flag.spelled())),
                "{line}"
            );
        }
        for line in text.lines() {
            assert!(line.chars().count() <= USAGE_COLUMNS, "too wide: {line}");
        }
        assert!(flat.contains("-h, --help print this help"));
        assert!(flat.contains("--no-www serve only the API"));
        assert!(flat.contains("Times (SECS) are seconds from 0.01 to 86400"));
        assert!(flat.contains(&format!("open files - {RESERVED_DESCRIPTORS}")));
        assert!(flat.contains(
            "--max-body BYTES largest request body; past it: 413 [at most 64 MiB; default: 65536]"
        ));
        assert!(flat.contains(
            "--max-head BYTES largest request head; past it: 431 [1 KiB to 1 MiB; default: 8192]"
        ));
    }
    /// A "word" too long for any line (a bracket with a long note) is broken at its spaces
    /// rather than overflow the 92 columns.
    #[test]
    fn wrapping_never_passes_the_column_limit() {
        let mut text = String::new();
        let long = format!("[{}]", "default word ".repeat(20).trim_end());
        wrap(
            &mut text,
            "  --flag N".into(),
            28,
            &["help".into(), long.clone()],
        );
        assert!(text.lines().count() > 2, "{text}");
        for line in text.lines() {
            assert!(line.len() <= USAGE_COLUMNS, "{line}");
        }
        let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
        assert_eq!(flat, format!("--flag N help {long}"));
    }
}
