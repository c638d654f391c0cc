//! Text lbhost did not write itself — a guest's messages, names and values from the config or
//! the admin API, parse errors that quote their input — made safe to show in a log line,
//! `/status`, a metric label or a response: cut to [`MAX_BYTES`] and free of control characters.
//!
//! Bound such text where it enters a value lbhost keeps or shows (a fault, a load or config
//! error, an admin answer), so that nothing downstream ever holds more than a bounded copy.

use std::borrow::Cow;
use std::fmt::Write;

/// Most bytes of foreign text kept; a longer text is cut on a char boundary and says so.
pub(crate) const MAX_BYTES: usize = 1024;

/// `text` cut to [`MAX_BYTES`] on a char boundary (then marked, e.g. `… (cut, 12.5 MB in
/// all)`), with every control character (line breaks, escapes, bidirectional overrides) turned
/// into a space so it cannot forge a log line or reorder one. Borrowed when nothing changes.
pub(crate) fn bounded(text: &str) -> Cow<'_, str> {
    if text.len() <= MAX_BYTES && !has_control(text) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len().min(MAX_BYTES) + 32);
    let mut kept = 0;
    for c in text.chars() {
        if kept + c.len_utf8() > MAX_BYTES {
            break;
        }
        kept += c.len_utf8();
        out.push(if is_control(c) { ' ' } else { c });
    }
    if kept < text.len() {
        let _ = write!(out, "… (cut, {} in all)", size(text.len()));
    }
    Cow::Owned(out)
}

/// [`bounded`] for an owned string: no copy when nothing changes.
pub(crate) fn bounded_owned(text: String) -> String {
    match bounded(&text) {
        Cow::Borrowed(_) => text,
        Cow::Owned(cut) => cut,
    }
}

/// Whether `text` holds a character [`bounded`] would replace (see [`is_control`]).
pub(crate) fn has_control(text: &str) -> bool {
    text.chars().any(is_control)
}

/// Characters that move the cursor, end a line, or reorder what follows when shown: C0 and C1
/// controls (`\n`, `\r`, ESC, DEL, ...), the line and paragraph separators, and the
/// bidirectional marks, embeddings, overrides and isolates.
fn is_control(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200e}' | '\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// `bytes` for people: `1.2 kB`, `12.5 MB`, `1.0 GB` (decimal units, one decimal).
fn size(bytes: usize) -> String {
    let b = bytes as f64;
    match bytes {
        0..1_000 => format!("{bytes} B"),
        1_000..1_000_000 => format!("{:.1} kB", b / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} MB", b / 1e6),
        _ => format!("{:.1} GB", b / 1e9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_clean_text_is_borrowed_unchanged() {
        let text = "configure refused: strategy_config.header: expected a header name";
        assert!(matches!(bounded(text), Cow::Borrowed(t) if t == text));
        assert_eq!(bounded_owned(text.to_string()), text);
    }

    #[test]
    fn control_characters_become_spaces() {
        let forged =
            "bad\n2026-01-01T00:00:00Z ERROR forged\r\x1b[31mred\u{7f}\u{85}\u{202e}x\u{2028}";
        let shown = bounded(forged);
        assert_eq!(shown, "bad 2026-01-01T00:00:00Z ERROR forged  [31mred   x ");
        assert!(!shown.contains(['\n', '\r', '\x1b']));
    }

    #[test]
    fn long_text_is_cut_on_a_char_boundary_and_says_how_long_it_was() {
        // One ASCII byte first, then 2-byte chars: byte 1024 falls inside a char.
        let text = format!("x{}", "é".repeat(6_250_000));
        assert_eq!(text.len(), 12_500_001);
        let shown = bounded(&text);
        let (kept, marker) = shown.split_once('…').expect("marked as cut");
        assert_eq!(
            kept.len(),
            1023,
            "the char across the bound is left out whole"
        );
        assert!(kept.starts_with('x') && kept[1..].chars().all(|c| c == 'é'));
        assert_eq!(marker, " (cut, 12.5 MB in all)");
        assert!(shown.len() < MAX_BYTES + 32);
    }

    #[test]
    fn text_of_exactly_the_bound_is_kept_whole() {
        let text = "a".repeat(MAX_BYTES);
        assert_eq!(bounded(&text), text);
        let over = "a".repeat(MAX_BYTES + 1);
        assert_eq!(
            bounded(&over),
            format!("{}… (cut, 1.0 kB in all)", "a".repeat(MAX_BYTES))
        );
    }

    #[test]
    fn sizes_read_naturally() {
        assert_eq!(size(999), "999 B");
        assert_eq!(size(1_025), "1.0 kB");
        assert_eq!(size(12_500_000), "12.5 MB");
        assert_eq!(size(2_000_000_000), "2.0 GB");
    }
}
