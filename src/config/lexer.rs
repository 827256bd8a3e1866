//! Tokenizer for the conntrackd.conf syntax.
//!
//! The file format is free-form: whitespace and newlines separate tokens,
//! `#` starts a comment that runs to the end of the line, and `{` / `}`
//! delimit blocks. A comma is a token of its own, outside a path, as in
//! conntrackd's lexer: no clause takes one, so the parser refuses it
//! wherever it stands, as conntrackd does. Everything else is a *word*.
//! Unlike conntrackd's flex lexer, this one does not classify words
//! (number, IP, path …) up front: the parser knows what each clause
//! expects and can therefore say "found X, expected an IPv4 address"
//! instead of a bare "syntax error".
//!
//! Owns: byte offsets → line:column positions. Never allocates per token
//! (words borrow from the input). Never panics.

use std::fmt::{self, Write};

/// A 1-based line and column in the configuration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// One token of the configuration language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tok<'a> {
    Open,
    Close,
    /// `,`: conntrackd's lexer hands it to its grammar as a symbol of its
    /// own, which no rule takes (a syntax error wherever it stands).
    Comma,
    Word(&'a str),
    Eof,
}

impl fmt::Display for Tok<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Open => f.write_str("`{'"),
            Tok::Close => f.write_str("`}'"),
            Tok::Comma => f.write_str("`,'"),
            Tok::Word(w) => {
                // A message quotes the word as the file holds it, so a
                // character nobody sees (a byte-order mark, a NUL, a
                // zero-width space) is written escaped: unescaped, a
                // marked `General' read "found `General', expected a
                // section (General, …)". Printable ones stay as written.
                f.write_char('`')?;
                for c in w.chars() {
                    match c {
                        '\'' | '"' | '\\' => f.write_char(c)?,
                        _ => write!(f, "{}", c.escape_debug())?,
                    }
                }
                f.write_char('\'')
            }
            Tok::Eof => f.write_str("end of file"),
        }
    }
}

/// Splits a configuration text into tokens with their positions.
pub struct Lexer<'a> {
    src: &'a str,
    off: usize,
    line: u32,
    col: u32,
}

impl<'a> Lexer<'a> {
    pub fn new(src: &'a str) -> Self {
        Lexer {
            src,
            off: 0,
            line: 1,
            col: 1,
        }
    }

    fn bump(&mut self, c: char) {
        self.off += c.len_utf8();
        if c == '\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
    }

    /// Returns the next token and where it starts.
    pub fn next_token(&mut self) -> (Tok<'a>, Pos) {
        loop {
            let Some(c) = self.src[self.off..].chars().next() else {
                return (Tok::Eof, self.pos());
            };
            if c.is_whitespace() {
                self.bump(c);
            } else if c == '#' {
                while let Some(c) = self.src[self.off..].chars().next() {
                    if c == '\n' {
                        break;
                    }
                    self.bump(c);
                }
            } else {
                break;
            }
        }
        let pos = self.pos();
        let start = self.off;
        let c = self.src[self.off..].chars().next().unwrap_or(' ');
        match c {
            '{' => {
                self.bump(c);
                (Tok::Open, pos)
            }
            '}' => {
                self.bump(c);
                (Tok::Close, pos)
            }
            ',' => {
                self.bump(c);
                (Tok::Comma, pos)
            }
            _ => {
                // A path keeps a `#` and a `,` (`LogFile /var/log/fw#1.log`,
                // `LockFile /run/a,b`), as conntrackd's lexer reads it;
                // elsewhere `#` starts a comment even without a space
                // before it, and a comma ends the word (`TCP,UDP` is
                // `TCP`, `,`, `UDP` there).
                let path = c == '/';
                while let Some(c) = self.src[self.off..].chars().next() {
                    if c.is_whitespace()
                        || matches!(c, '{' | '}')
                        || (matches!(c, '#' | ',') && !path)
                    {
                        break;
                    }
                    self.bump(c);
                }
                (Tok::Word(&self.src[start..self.off]), pos)
            }
        }
    }

    fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            col: self.col,
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn all(src: &str) -> Vec<(Tok<'_>, Pos)> {
        let mut lx = Lexer::new(src);
        let mut out = Vec::new();
        loop {
            let t = lx.next_token();
            out.push(t);
            if t.0 == Tok::Eof {
                return out;
            }
        }
    }

    #[test]
    fn words_braces_comments_and_positions() {
        let toks = all("General {\n  HashSize 8192 # comment {\n}x{y}");
        let got: Vec<_> = toks
            .iter()
            .map(|(t, p)| (t.to_string(), p.line, p.col))
            .collect();
        assert_eq!(
            got,
            vec![
                ("`General'".into(), 1, 1),
                ("`{'".into(), 1, 9),
                ("`HashSize'".into(), 2, 3),
                ("`8192'".into(), 2, 12),
                ("`}'".into(), 3, 1),
                ("`x'".into(), 3, 2),
                ("`{'".into(), 3, 3),
                ("`y'".into(), 3, 4),
                ("`}'".into(), 3, 5),
                ("end of file".into(), 3, 6),
            ]
        );
    }

    #[test]
    fn a_hash_inside_a_path_is_part_of_it() {
        let words: Vec<_> = all("LogFile /var/log/fw#1.log\nHashSize 8#x\n")
            .iter()
            .map(|(t, _)| t.to_string())
            .collect();
        assert_eq!(
            words,
            [
                "`LogFile'",
                "`/var/log/fw#1.log'",
                "`HashSize'",
                "`8'",
                "end of file"
            ]
        );
    }

    /// As conntrackd's lexer: a comma is a token of its own (where it is
    /// refused), except inside a path.
    #[test]
    fn a_comma_is_a_token_except_in_a_path() {
        let toks: Vec<_> = all("{ TCP,UDP , }\nLockFile /run/a,b # c, d")
            .iter()
            .map(|(t, p)| (t.to_string(), p.line, p.col))
            .collect();
        assert_eq!(
            toks,
            vec![
                ("`{'".into(), 1, 1),
                ("`TCP'".into(), 1, 3),
                ("`,'".into(), 1, 6),
                ("`UDP'".into(), 1, 7),
                ("`,'".into(), 1, 11),
                ("`}'".into(), 1, 13),
                ("`LockFile'".into(), 2, 1),
                ("`/run/a,b'".into(), 2, 10),
                ("end of file".into(), 2, 25),
            ]
        );
    }

    /// A character the reader cannot see is written escaped where a
    /// message quotes a word: a file saved with a byte-order mark said
    /// "found `General', expected a section (General, …)".
    #[test]
    fn a_quoted_word_shows_its_invisible_characters() {
        let shown = |w: &str| Tok::Word(w).to_string();
        assert_eq!(shown("\u{feff}General"), "`\\u{feff}General'");
        assert_eq!(shown("x\0y"), "`x\\0y'");
        assert_eq!(shown("a\u{200b}b\u{7}"), "`a\\u{200b}b\\u{7}'");
        // Printable characters stay as written, quotes and backslashes
        // included.
        assert_eq!(shown("/var/l\"o'g\\ü"), "`/var/l\"o'g\\ü'");
        let e = crate::config::parse("\u{feff}General { }", "b.conf")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "b.conf:1:1: found `\\u{feff}General', expected a section \
             (General, Sync, Stats, Helper)"
        );
    }

    #[test]
    fn empty_and_comment_only_input() {
        assert_eq!(all("").len(), 1);
        assert_eq!(all("# only a comment").len(), 1);
        assert_eq!(all("\n\n#x\n")[0].1, Pos { line: 4, col: 1 });
    }
}
