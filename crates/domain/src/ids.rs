//! Identifier newtypes that can only hold valid values, so a malformed id is rejected at
//! the edge and never reaches storage or Cal.com.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::FieldError;

fn is_slug_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

macro_rules! slug_id {
    ($name:ident, $what:literal, $max:literal) => {
        #[doc = concat!("A ", $what, ": 1 to ", stringify!($max), " characters of letters, digits, `-`, `_` or `.`.")]
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn parse(value: &str) -> Result<Self, FieldError> {
                if value.is_empty() || value.chars().count() > $max {
                    return Err(FieldError::new(
                        "",
                        "invalid_id",
                        format!("a {} must be 1 to {} characters long", $what, $max),
                    ));
                }
                if !value.chars().all(is_slug_char) {
                    return Err(FieldError::new(
                        "",
                        "invalid_id",
                        format!(
                            "a {} may only contain letters, digits, '-', '_' and '.', got {value:?}",
                            $what
                        ),
                    ));
                }
                Ok(Self(value.to_string()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = FieldError;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(&value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> Self {
                value.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

slug_id!(ServiceId, "service id", 64);
slug_id!(StaffId, "staff id", 64);
slug_id!(SegmentKey, "segment key", 16);

/// A Cal.com event type id (a positive integer in Cal.com's database).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EventTypeId(pub i64);

/// A Cal.com user id; with the username it is how a managed parent's child is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CalcomUserId(pub i64);

impl fmt::Display for EventTypeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for CalcomUserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_reject_empty_long_and_odd_characters() {
        assert!(StaffId::parse("anna").is_ok());
        assert!(StaffId::parse("").is_err());
        assert!(StaffId::parse("anna smith").is_err());
        assert!(SegmentKey::parse("A").is_ok());
        assert!(SegmentKey::parse("ABCDEFGHIJKLMNOPQ").is_err());
    }

    #[test]
    fn ids_deserialize_through_validation() {
        let ok: Result<ServiceId, _> = serde_json_like("colour");
        assert!(ok.is_ok());
        let bad: Result<ServiceId, _> = serde_json_like("colour/../x");
        assert!(bad.is_err());
    }

    fn serde_json_like(v: &str) -> Result<ServiceId, FieldError> {
        ServiceId::try_from(v.to_string())
    }
}
