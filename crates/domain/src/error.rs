//! The validation error every domain constructor returns: which field is wrong, a stable
//! machine code, and a sentence a person can act on.

use std::fmt;

/// A value that failed validation. `field` is a JSON-pointer-like path into the request
/// (`segments[2].duration_minutes`), so an API can name the offending field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub code: &'static str,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            code,
            message: message.into(),
        }
    }

    /// Prefixes the field path, so nested validators can stay unaware of where they sit.
    pub fn within(mut self, parent: &str) -> Self {
        self.field = if self.field.is_empty() {
            parent.to_string()
        } else if self.field.starts_with('[') {
            format!("{parent}{}", self.field)
        } else {
            format!("{parent}.{}", self.field)
        };
        self
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for FieldError {}

/// Refuses control characters in a text field (`multiline` lets line breaks and tabs
/// through, for notes). PostgreSQL cannot store NUL at all and SQLite would, so both
/// backends refuse them the same way, and nothing unprintable reaches Cal.com.
pub fn refuse_control_characters(
    field: &str,
    value: &str,
    multiline: bool,
) -> Result<(), FieldError> {
    let allowed = |c: char| multiline && matches!(c, '\n' | '\r' | '\t');
    match value.chars().find(|&c| c.is_control() && !allowed(c)) {
        None => Ok(()),
        Some(c) => Err(FieldError::new(
            field,
            "control_character",
            format!(
                "{field} contains the control character U+{:04X}; send printable text only",
                u32::from(c)
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_refused_with_the_field_named() {
        let err = refuse_control_characters("name", "Ada\u{0}", false).expect_err("nul");
        assert_eq!(
            (err.field.as_str(), err.code),
            ("name", "control_character")
        );
        assert!(err.message.contains("U+0000"));
        assert!(refuse_control_characters("notes", "line\nline\ttab", true).is_ok());
        assert!(refuse_control_characters("name", "two\nlines", false).is_err());
        assert!(refuse_control_characters("name", "Zoë Ärger", false).is_ok());
    }
}
