//! Input hygiene in one place: every free-text field of a request has a length limit and no
//! control characters, and errors quote at most a short prefix of what was sent.

use crate::error::ApiError;

/// Characters of a caller's input quoted back in an error message.
const QUOTED_CHARS: usize = 40;

/// A short, printable rendering of `value` for an error message: its first characters, with
/// control characters escaped, and an ellipsis when it was longer.
pub fn quote(value: &str) -> String {
    let mut out = String::from("\"");
    for (i, c) in value.chars().enumerate() {
        if i == QUOTED_CHARS {
            out.push('…');
            break;
        }
        if c.is_control() || c == '"' || c == '\\' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out.push('"');
    out
}

/// Why a text is refused, if it is: longer than `max_chars`, or holding a control character
/// (line breaks only where `multiline`).
pub fn problem(value: &str, max_chars: usize, multiline: bool) -> Option<String> {
    // Bytes bound the work before characters are counted.
    if value.len() > max_chars * 4 || value.chars().count() > max_chars {
        return Some(format!("at most {max_chars} characters"));
    }
    let allowed = |c: char| multiline && (c == '\n' || c == '\t');
    if let Some(c) = value.chars().find(|c| c.is_control() && !allowed(*c)) {
        return Some(format!(
            "must not contain control characters (found U+{:04X})",
            c as u32
        ));
    }
    None
}

/// A one-line text of at most `max_chars` characters, without control characters.
pub fn text(field: &str, value: &str, max_chars: usize) -> Result<(), ApiError> {
    match problem(value, max_chars, false) {
        None => Ok(()),
        Some(why) => Err(ApiError::invalid(field, why)),
    }
}

/// A text of several lines (line feeds and tabs allowed), at most `max_chars` characters.
pub fn multiline(field: &str, value: &str, max_chars: usize) -> Result<(), ApiError> {
    match problem(value, max_chars, true) {
        None => Ok(()),
        Some(why) => Err(ApiError::invalid(field, why)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_control_characters() {
        assert!(text("name", "Claire \"la maire\"", 200).is_ok());
        assert!(text("name", "Claire\r\nBcc: x", 200).is_err());
        assert!(text("name", "a\0b", 200).is_err());
        assert!(text("name", &"é".repeat(201), 200).is_err());
        assert!(text("name", &"é".repeat(200), 200).is_ok());
        assert!(multiline("minutes", "ligne 1\nligne 2\tfin", 200).is_ok());
        assert!(multiline("minutes", "ligne 1\r\nligne 2", 200).is_err());
    }

    #[test]
    fn quotes_are_short_and_printable() {
        let q = quote(&"x".repeat(1 << 20));
        assert!(q.chars().count() < 50, "{q}");
        assert_eq!(quote("a\nb\"c"), "\"a\\nb\\\"c\"");
    }
}
