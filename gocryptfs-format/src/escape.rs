//! Untrusted names made safe to print in text: a name from the cipher tree (a raw cipher
//! name, or a plaintext name of a `PlaintextNames` tree) may hold ESC, newlines or bidi
//! overrides that forge log and report lines or drive the terminal. [`Escaped`] prints
//! printable text as it is and everything else as an escape: `\e`, `\n`, `\r`, `\t`,
//! `\\`, `\u{202e}` for invisible or direction-changing characters, `\xNN` for bytes that
//! are not UTF-8. JSON output needs none of this (serde escapes), and keeps the raw bytes
//! (base64) where they are not UTF-8.

use std::fmt::{self, Write as _};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Displays a path (or any byte string) with control, invisible and non-UTF-8 content
/// escaped.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(pub &'a [u8]);

/// [`Escaped`] for a path.
#[must_use]
pub fn escaped(p: &Path) -> Escaped<'_> {
    Escaped(p.as_os_str().as_bytes())
}

/// True for characters that must not reach a terminal or a log line as they are.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c,
            // Bidi embeddings, overrides and isolates; zero-width and invisible formatting.
            '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}' | '\u{feff}' | '\u{061c}')
}

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.0.utf8_chunks() {
            for c in chunk.valid().chars() {
                match c {
                    '\\' => f.write_str("\\\\")?,
                    '\u{1b}' => f.write_str("\\e")?,
                    '\n' => f.write_str("\\n")?,
                    '\r' => f.write_str("\\r")?,
                    '\t' => f.write_str("\\t")?,
                    c if needs_escape(c) => write!(f, "\\u{{{:x}}}", c as u32)?,
                    c => f.write_char(c)?,
                }
            }
            for b in chunk.invalid() {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

/// `text` with every character that [`Escaped`] escapes escaped: for whole messages and
/// log fields that may carry untrusted names.
#[must_use]
pub fn escape_text(text: &str) -> String {
    Escaped(text.as_bytes()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_forges_lines() {
        let e = |b: &[u8]| Escaped(b).to_string();
        assert_eq!(e(b"model.safetensors"), "model.safetensors");
        assert_eq!(e(b"a\x1b[2Jb\nc"), "a\\e[2Jb\\nc");
        assert_eq!(e(b"x\\y"), "x\\\\y");
        assert_eq!(e(b"bad\xff\xfe"), "bad\\xff\\xfe");
        assert_eq!(e("evil\u{202e}txt.exe".as_bytes()), "evil\\u{202e}txt.exe");
        assert_eq!(e("caf\u{e9}".as_bytes()), "caf\u{e9}");
        assert_eq!(e(b"\x07\x00"), "\\u{7}\\u{0}");
    }
}
