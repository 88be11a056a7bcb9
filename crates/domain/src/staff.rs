//! A staff member as the salon defines them: a display name, the Cal.com user their
//! segments are booked for, and their home time zone.

use chrono_tz::Tz;

use crate::error::refuse_control_characters;
use crate::plan::parse_time_zone;
use crate::{CalcomUserId, FieldError};

/// A validated staff profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffProfile {
    pub name: String,
    pub calcom_user_id: CalcomUserId,
    pub calcom_username: String,
    pub time_zone: Tz,
}

impl StaffProfile {
    pub fn new(
        name: &str,
        calcom_user_id: i64,
        calcom_username: &str,
        time_zone: &str,
    ) -> Result<Self, FieldError> {
        let name = name.trim();
        refuse_control_characters("name", name, false)?;
        if name.is_empty() || name.chars().count() > 200 {
            return Err(FieldError::new(
                "name",
                "invalid_name",
                "the staff name must be 1 to 200 characters",
            ));
        }
        if calcom_user_id <= 0 {
            return Err(FieldError::new(
                "calcom_user_id",
                "invalid_calcom_user_id",
                "calcom_user_id is the positive id of the Cal.com user",
            ));
        }
        let username = calcom_username.trim();
        refuse_control_characters("calcom_username", username, false)?;
        if username.is_empty()
            || username.chars().count() > 200
            || username.chars().any(char::is_whitespace)
        {
            return Err(FieldError::new(
                "calcom_username",
                "invalid_calcom_username",
                "calcom_username is the Cal.com username: 1 to 200 characters, no spaces",
            ));
        }
        Ok(Self {
            name: name.to_string(),
            calcom_user_id: CalcomUserId(calcom_user_id),
            calcom_username: username.to_string(),
            time_zone: parse_time_zone(time_zone)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staff_profile_checks_each_field() {
        assert!(StaffProfile::new("Anna", 7, "anna", "Europe/Berlin").is_ok());
        assert_eq!(
            StaffProfile::new("", 7, "anna", "Europe/Berlin")
                .expect_err("name")
                .field,
            "name"
        );
        assert_eq!(
            StaffProfile::new("Anna", 0, "anna", "Europe/Berlin")
                .expect_err("id")
                .field,
            "calcom_user_id"
        );
        assert_eq!(
            StaffProfile::new("Anna", 7, "an na", "Europe/Berlin")
                .expect_err("username")
                .field,
            "calcom_username"
        );
        assert_eq!(
            StaffProfile::new("Anna", 7, "anna", "Berlin")
                .expect_err("zone")
                .field,
            "time_zone"
        );
    }
}
