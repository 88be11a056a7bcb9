//! `BookingMetadata`: the correlation data attached to a booking, held only in a form
//! Cal.com accepts (≤ 50 keys, keys ≤ 40 chars, strings ≤ 500 chars, scalar values).
//! Checking here means a bad value fails before the request, not as a 400 after it.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::error::CalcomError;

/// Cal.com's limits on booking metadata.
pub const MAX_METADATA_KEYS: usize = 50;
pub const MAX_METADATA_KEY_CHARS: usize = 40;
pub const MAX_METADATA_STRING_CHARS: usize = 500;

/// Booking metadata that is known to pass Cal.com's validator.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct BookingMetadata(BTreeMap<String, Value>);

/// Cal.com counts lengths in JavaScript string units (UTF-16), which is never fewer than
/// the number of chars, so counting that way is the safe side.
fn js_length(text: &str) -> usize {
    text.encode_utf16().count()
}

impl BookingMetadata {
    /// Validates the pairs; a repeated key is an error rather than a silent overwrite.
    pub fn new<K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> Result<Self, CalcomError>
    where
        K: Into<String>,
        V: Into<Value>,
    {
        let mut map = BTreeMap::new();
        for (key, value) in pairs {
            let key = key.into();
            let value = value.into();
            let field = format!("metadata.{key}");
            if key.is_empty() {
                return Err(CalcomError::invalid("metadata", "empty key"));
            }
            if js_length(&key) > MAX_METADATA_KEY_CHARS {
                return Err(CalcomError::invalid(
                    field,
                    format!("key longer than {MAX_METADATA_KEY_CHARS} characters"),
                ));
            }
            match &value {
                Value::String(s) if js_length(s) > MAX_METADATA_STRING_CHARS => {
                    return Err(CalcomError::invalid(
                        field,
                        format!("string longer than {MAX_METADATA_STRING_CHARS} characters"),
                    ));
                }
                Value::String(_) | Value::Number(_) | Value::Bool(_) => {}
                Value::Null | Value::Array(_) | Value::Object(_) => {
                    return Err(CalcomError::invalid(
                        field,
                        "value must be a string, number or boolean",
                    ));
                }
            }
            if map.insert(key, value).is_some() {
                return Err(CalcomError::invalid(field, "duplicate key"));
            }
            if map.len() > MAX_METADATA_KEYS {
                return Err(CalcomError::invalid(
                    "metadata",
                    format!("more than {MAX_METADATA_KEYS} keys"),
                ));
            }
        }
        Ok(Self(map))
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_map(&self) -> &BTreeMap<String, Value> {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_limits_exactly() {
        let pairs: Vec<(String, Value)> = (0..MAX_METADATA_KEYS)
            .map(|i| (format!("{i:0>40}"), Value::from("v".repeat(500))))
            .collect();
        let meta = BookingMetadata::new(pairs).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(meta.len(), 50);
    }

    #[test]
    fn accepts_scalars() {
        let meta = BookingMetadata::new([
            ("appointment_id", Value::from("a1")),
            ("segment", Value::from("B")),
            ("attempt", Value::from(3)),
            ("ratio", Value::from(0.5)),
            ("flag", Value::from(true)),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(meta.get("attempt"), Some(&Value::from(3)));
    }

    fn field_of(err: CalcomError) -> String {
        match err {
            CalcomError::InvalidRequest { field, .. } => field,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn refuses_51_keys() {
        let pairs = (0..51).map(|i| (format!("k{i}"), Value::from(i)));
        let err = BookingMetadata::new(pairs)
            .err()
            .unwrap_or_else(|| panic!("accepted"));
        assert_eq!(field_of(err), "metadata");
    }

    #[test]
    fn refuses_long_keys_and_strings() {
        let err = BookingMetadata::new([("k".repeat(41), Value::from(1))])
            .err()
            .unwrap_or_else(|| panic!("accepted"));
        assert!(field_of(err).starts_with("metadata.k"));
        assert!(BookingMetadata::new([("k", "v".repeat(501))]).is_err());
        // Astral characters count twice in JavaScript.
        assert!(BookingMetadata::new([("k", "😀".repeat(251))]).is_err());
        assert!(BookingMetadata::new([("k", "😀".repeat(250))]).is_ok());
    }

    #[test]
    fn refuses_null_arrays_objects_duplicates_and_empty_keys() {
        assert!(BookingMetadata::new([("k", Value::Null)]).is_err());
        assert!(BookingMetadata::new([("k", serde_json::json!([1]))]).is_err());
        assert!(BookingMetadata::new([("k", serde_json::json!({"a": 1}))]).is_err());
        assert!(BookingMetadata::new([("k", 1), ("k", 2)]).is_err());
        assert!(BookingMetadata::new([("", 1)]).is_err());
    }
}
