use std::str::FromStr;

use phonenumber::{Mode, country};
use serde::{Deserialize, Serialize};

use super::text::{Invalid, Limits, parse_text};

/// An ISO 3166 region used to read phones written without a country code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region(country::Id);

impl Region {
    pub fn parse(value: &str) -> Result<Self, Invalid> {
        country::Id::from_str(&value.trim().to_ascii_uppercase())
            .map(Self)
            .map_err(|_| {
                format!("{value:?} is not an ISO 3166 region code such as \"US\" or \"GB\"")
            })
    }

    /// The request's region if it gave one, else the server's default.
    pub fn parse_or(value: &str, default: Region) -> Result<Self, Invalid> {
        if value.trim().is_empty() {
            Ok(default)
        } else {
            Self::parse(value)
        }
    }
}

impl Default for Region {
    fn default() -> Self {
        Self(country::Id::US)
    }
}

/// A phone number as written, with its E.164 form on which phones match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Phone {
    raw: String,
    e164: String,
}

impl Phone {
    pub fn parse(value: &str, region: Region) -> Result<Self, Invalid> {
        let raw = parse_text(value, Limits::PHONE)?;
        if raw.is_empty() {
            return Err("is required".into());
        }
        let number = phonenumber::parse(Some(region.0), &raw)
            .map_err(|e| format!("is not a phone number that can be read ({e})"))?;
        let e164 = number.format().mode(Mode::E164).to_string();
        Ok(Self { raw, e164 })
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The E.164 form, e.g. `+14155550100`; also the matching key.
    pub fn e164(&self) -> &str {
        &self.e164
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_in_different_formats_share_one_e164_form() {
        let us = Region::parse("us").unwrap();
        let a = Phone::parse("(415) 555-0100", us).unwrap();
        let b = Phone::parse("+1 415 555 0100", Region::parse("GB").unwrap()).unwrap();
        assert_eq!(a.e164(), "+14155550100");
        assert_eq!(a.e164(), b.e164());
        assert_eq!(a.as_str(), "(415) 555-0100");
    }

    #[test]
    fn unreadable_phones_and_regions_are_rejected() {
        assert!(Phone::parse("not a phone", Region::default()).is_err());
        assert!(Phone::parse("", Region::default()).is_err());
        assert!(Region::parse("XX").is_err());
    }
}
