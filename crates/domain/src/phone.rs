//! Phone numbers in E.164, the only form Cal.com accepts for an attendee (FACTS.md 9). A
//! number written with `+` or `00` is international; any other number is national and is
//! read with the tenant's country (calling code and trunk prefix from the small table
//! below). No number database: length and digits are checked, not whether the number is
//! assigned, which is the carrier's business.

use crate::FieldError;

/// A country phasebook can read national numbers for: ISO 3166 alpha-2, its calling code,
/// and the trunk prefix dialled before a national number (dropped in E.164).
struct Dialling {
    country: &'static str,
    calling_code: &'static str,
    trunk_prefix: Option<&'static str>,
}

const fn dial(
    country: &'static str,
    calling_code: &'static str,
    trunk_prefix: Option<&'static str>,
) -> Dialling {
    Dialling {
        country,
        calling_code,
        trunk_prefix,
    }
}

/// Where salons using phasebook are. Italy keeps its leading 0 in E.164, so it has no
/// trunk prefix; NANP numbers may be dialled with a leading 1.
const COUNTRIES: &[Dialling] = &[
    dial("AT", "43", Some("0")),
    dial("AU", "61", Some("0")),
    dial("BE", "32", Some("0")),
    dial("CA", "1", Some("1")),
    dial("CH", "41", Some("0")),
    dial("CZ", "420", None),
    dial("DE", "49", Some("0")),
    dial("DK", "45", None),
    dial("ES", "34", None),
    dial("FI", "358", Some("0")),
    dial("FR", "33", Some("0")),
    dial("GB", "44", Some("0")),
    dial("GR", "30", None),
    dial("IE", "353", Some("0")),
    dial("IT", "39", None),
    dial("LU", "352", None),
    dial("NL", "31", Some("0")),
    dial("NO", "47", None),
    dial("NZ", "64", Some("0")),
    dial("PL", "48", None),
    dial("PT", "351", None),
    dial("SE", "46", Some("0")),
    dial("US", "1", Some("1")),
];

/// A country phasebook can read national phone numbers for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Country(&'static str);

impl Country {
    /// Accepts an ISO 3166 alpha-2 code (any case) from the table above.
    pub fn parse(value: &str) -> Result<Self, FieldError> {
        let upper = value.trim().to_ascii_uppercase();
        COUNTRIES
            .iter()
            .find(|c| c.country == upper)
            .map(|c| Self(c.country))
            .ok_or_else(|| {
                FieldError::new(
                    "country",
                    "unknown_country",
                    format!(
                        "{value:?} is not a country phasebook can read phone numbers for; use an ISO 3166 alpha-2 code, one of {}",
                        COUNTRIES
                            .iter()
                            .map(|c| c.country)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })
    }

    pub fn as_str(&self) -> &'static str {
        self.0
    }

    fn dialling(&self) -> Option<&'static Dialling> {
        COUNTRIES.iter().find(|c| c.country == self.0)
    }
}

/// E.164 allows at most 15 digits; no real number is shorter than 8 with its country code.
const MIN_DIGITS: usize = 8;
const MAX_DIGITS: usize = 15;

/// Normalises `raw` to E.164 (`+4915123456789`). Spaces, dashes, dots, slashes and
/// parentheses are ignored. A national number needs `country`; without it the error says
/// to send the number with its country code. Errors name the field `phone`.
pub fn normalise_phone(raw: &str, country: Option<Country>) -> Result<String, FieldError> {
    let compact: String = raw
        .trim()
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '/' | '(' | ')' | '\u{a0}'))
        .collect();
    let invalid = |why: &str| {
        FieldError::new(
            "phone",
            "invalid_phone",
            format!("{why}; send it in international form, e.g. +4915123456789"),
        )
    };
    let international = if let Some(rest) = compact.strip_prefix('+') {
        rest.to_string()
    } else if let Some(rest) = compact.strip_prefix("00") {
        rest.to_string()
    } else {
        if compact.is_empty() || !compact.chars().all(|c| c.is_ascii_digit()) {
            return Err(invalid(
                "the phone number may only hold digits after an optional +",
            ));
        }
        let Some(dialling) = country.and_then(|c| c.dialling()) else {
            return Err(FieldError::new(
                "phone",
                "phone_needs_country",
                "the phone number has no country code and the tenant has no country set to read it with; send it in international form (+4915123456789) or set the tenant's country",
            ));
        };
        let national = match dialling.trunk_prefix {
            Some(prefix) => compact.strip_prefix(prefix).unwrap_or(&compact),
            None => &compact,
        };
        format!("{}{national}", dialling.calling_code)
    };
    if !international.chars().all(|c| c.is_ascii_digit()) {
        return Err(invalid(
            "the phone number may only hold digits after an optional +",
        ));
    }
    if international.starts_with('0') {
        return Err(invalid("a country code never starts with 0"));
    }
    if !(MIN_DIGITS..=MAX_DIGITS).contains(&international.len()) {
        return Err(invalid(&format!(
            "an international number has {MIN_DIGITS} to {MAX_DIGITS} digits with its country code, this one has {}",
            international.len()
        )));
    }
    Ok(format!("+{international}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn de() -> Option<Country> {
        Some(Country::parse("de").expect("DE is known"))
    }

    #[test]
    fn international_forms_are_kept_and_compacted() {
        assert_eq!(
            normalise_phone("+49 151 2345-6789", None).expect("ok"),
            "+4915123456789"
        );
        assert_eq!(
            normalise_phone("0049 (151) 23456789", None).expect("ok"),
            "+4915123456789"
        );
    }

    #[test]
    fn national_numbers_are_read_with_the_tenant_country() {
        assert_eq!(
            normalise_phone("0151 23456789", de()).expect("ok"),
            "+4915123456789"
        );
        let it = Some(Country::parse("IT").expect("IT"));
        assert_eq!(
            normalise_phone("06 1234 5678", it).expect("ok"),
            "+390612345678"
        );
        let us = Some(Country::parse("US").expect("US"));
        assert_eq!(
            normalise_phone("(415) 555-0134", us).expect("ok"),
            "+14155550134"
        );
        assert_eq!(
            normalise_phone("1 415 555 0134", us).expect("ok"),
            "+14155550134"
        );
    }

    #[test]
    fn national_number_without_a_country_is_refused_with_its_own_code() {
        let err = normalise_phone("0151 23456789", None).expect_err("no country");
        assert_eq!(err.code, "phone_needs_country");
        assert_eq!(err.field, "phone");
    }

    #[test]
    fn letters_short_numbers_and_zero_country_codes_are_refused() {
        for bad in [
            "+49 151 CALLME",
            "+4912",
            "+0151234567",
            "+1234567890123456",
            "",
        ] {
            assert_eq!(
                normalise_phone(bad, de()).expect_err(bad).code,
                "invalid_phone",
                "{bad}"
            );
        }
    }

    #[test]
    fn unknown_countries_are_refused_naming_the_known_ones() {
        let err = Country::parse("XX").expect_err("unknown");
        assert_eq!(err.field, "country");
        assert!(err.message.contains("DE"));
    }

    proptest! {
        #[test]
        fn output_is_always_e164_and_normalising_twice_changes_nothing(
            raw in "[+0-9 ()./-]{0,24}",
            country in prop::sample::select(vec![None, Some("DE"), Some("US"), Some("IT"), Some("GB")]),
        ) {
            let country = country.map(|c| Country::parse(c).expect("known"));
            if let Ok(e164) = normalise_phone(&raw, country) {
                let digits = e164.strip_prefix('+').expect("starts with +");
                prop_assert!(digits.chars().all(|c| c.is_ascii_digit()));
                prop_assert!((MIN_DIGITS..=MAX_DIGITS).contains(&digits.len()));
                prop_assert!(!digits.starts_with('0'));
                prop_assert_eq!(normalise_phone(&e164, None).expect("idempotent"), e164.clone());
            }
        }
    }
}
