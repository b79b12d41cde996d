//! Untrusted text (KBS error details, kernel provider names, JWE header fields) reduced to
//! one bounded line of printable ASCII before it reaches an error message or a log line, so
//! a hostile peer cannot forge lines or send terminal escapes.

/// Most characters kept.
const MAX_CHARS: usize = 200;

/// Reduces untrusted text to one bounded line of printable ASCII.
#[must_use]
pub fn sanitize_detail(s: &str) -> String {
    let kept: String = s
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { ' ' })
        .take(MAX_CHARS)
        .collect();
    let mut out = kept.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().count() > MAX_CHARS {
        out.push_str("...");
    }
    out
}
