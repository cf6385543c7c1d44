use serde::{Deserialize, Serialize};

use super::text::{Invalid, Limits, parse_text};

/// A syntactically valid email address, kept as written (trimmed).
/// Two emails are the same address when their [`Email::key`]s are equal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    pub fn parse(value: &str) -> Result<Self, Invalid> {
        let value = parse_text(value, Limits::EMAIL)?;
        if value.is_empty() {
            return Err("is required".into());
        }
        email_address::EmailAddress::parse_with_options(&value, Default::default())
            .map_err(|e| format!("is not a valid email address ({e})"))?;
        Ok(Self(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The matching key: emails match case-insensitively after trimming.
    pub fn key(&self) -> String {
        self.0.to_lowercase()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_keep_their_spelling_but_match_case_insensitively() {
        let email = Email::parse("  Dana@Example.COM ").unwrap();
        assert_eq!(email.as_str(), "Dana@Example.COM");
        assert_eq!(email.key(), "dana@example.com");
    }

    #[test]
    fn malformed_emails_are_rejected() {
        for bad in ["", "dana", "dana@", "@example.com", "da na@example.com"] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
    }
}
