//! The elements of a contact's array properties, and when two of them are "the
//! same value" (so that merging adds nothing twice).
//!
//! Sameness: emails by their lower-cased address, phones by their E.164 form,
//! dates by tag and date, everything else by its content compared
//! case-insensitively. A value's own `tag` (like "work") does not make a
//! different value, except for dates, where the tag says what the date is.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::email::Email;
use super::phone::Phone;
use super::text::{Invalid, Limits, parse_text, same_text};

/// An element of an array property.
pub trait ArrayValue {
    /// The element's id; `None` for tags, which are their own identity.
    fn id(&self) -> Option<Uuid>;
    fn set_id(&mut self, id: Uuid);
    /// What AddValue answers as `value_id`.
    fn value_id(&self) -> String {
        self.id().map(|id| id.to_string()).unwrap_or_default()
    }
    fn same_as(&self, other: &Self) -> bool;
}

/// How the person agreed to receive email.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmailStatus {
    #[default]
    Unspecified,
    OptOut,
    Transactional,
    Recurring,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmailValue {
    pub id: Uuid,
    pub tag: String,
    pub email: Email,
    pub status: EmailStatus,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhoneValue {
    pub id: Uuid,
    pub tag: String,
    pub phone: Phone,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AddressValue {
    pub id: Uuid,
    pub tag: String,
    pub address: String,
    pub neighborhood: String,
    pub city: String,
    pub region: String,
    pub country: String,
    pub postal_code: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UrlValue {
    pub id: Uuid,
    pub tag: String,
    pub url: WebUrl,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DateValue {
    pub id: Uuid,
    pub tag: String,
    pub date: NaiveDate,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoteValue {
    pub id: Uuid,
    pub content: String,
    pub modify_time: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomFieldValue {
    pub id: Uuid,
    pub field: String,
    pub value: String,
}

/// An absolute http(s) URL, kept in the normalized form the `url` crate gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WebUrl(String);

impl WebUrl {
    pub fn parse(value: &str) -> Result<Self, Invalid> {
        let value = parse_text(value, Limits::URL)?;
        let url =
            url::Url::parse(&value).map_err(|e| format!("is not an absolute http(s) URL ({e})"))?;
        if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
            return Err("must be an absolute http or https URL".into());
        }
        Ok(Self(url.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A calendar date written as `YYYY-MM-DD`.
pub fn parse_date(value: &str) -> Result<NaiveDate, Invalid> {
    let value = value.trim();
    let shaped = value.len() == 10
        && value.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    shaped
        .then(|| NaiveDate::parse_from_str(value, "%Y-%m-%d").ok())
        .flatten()
        .ok_or_else(|| format!("{value:?} is not a date as YYYY-MM-DD"))
}

macro_rules! identified {
    ($($ty:ty),*) => {$(
        impl ArrayValue for $ty {
            fn id(&self) -> Option<Uuid> { Some(self.id) }
            fn set_id(&mut self, id: Uuid) { self.id = id; }
            fn same_as(&self, other: &Self) -> bool { self.same(other) }
        }
    )*};
}
identified!(
    EmailValue,
    PhoneValue,
    AddressValue,
    UrlValue,
    DateValue,
    NoteValue,
    CustomFieldValue
);

impl EmailValue {
    fn same(&self, other: &Self) -> bool {
        // Consistent with `Email::key`, without allocating for ASCII addresses.
        same_text(self.email.as_str(), other.email.as_str())
    }
}

impl PhoneValue {
    fn same(&self, other: &Self) -> bool {
        self.phone.e164() == other.phone.e164()
    }
}

impl AddressValue {
    fn same(&self, other: &Self) -> bool {
        same_text(&self.address, &other.address)
            && same_text(&self.neighborhood, &other.neighborhood)
            && same_text(&self.city, &other.city)
            && same_text(&self.region, &other.region)
            && same_text(&self.country, &other.country)
            && same_text(&self.postal_code, &other.postal_code)
    }
}

impl UrlValue {
    fn same(&self, other: &Self) -> bool {
        self.url == other.url
    }
}

impl DateValue {
    fn same(&self, other: &Self) -> bool {
        self.date == other.date && same_text(&self.tag, &other.tag)
    }
}

impl NoteValue {
    fn same(&self, other: &Self) -> bool {
        same_text(&self.content, &other.content)
    }
}

impl CustomFieldValue {
    fn same(&self, other: &Self) -> bool {
        same_text(&self.field, &other.field) && same_text(&self.value, &other.value)
    }
}

/// Tags are plain strings and their own id.
impl ArrayValue for String {
    fn id(&self) -> Option<Uuid> {
        None
    }
    fn set_id(&mut self, _: Uuid) {}
    fn value_id(&self) -> String {
        self.clone()
    }
    fn same_as(&self, other: &Self) -> bool {
        same_text(self, other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_must_be_real_and_written_as_yyyy_mm_dd() {
        assert_eq!(
            parse_date("1990-02-28").unwrap(),
            NaiveDate::from_ymd_opt(1990, 2, 28).unwrap()
        );
        for bad in [
            "1990-2-28",
            "1990-02-30",
            "28/02/1990",
            "",
            "1990-02-28T00:00",
        ] {
            assert!(parse_date(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn urls_must_be_absolute_http_or_https() {
        assert_eq!(
            WebUrl::parse("HTTPS://Example.com/a").unwrap().as_str(),
            "https://example.com/a"
        );
        for bad in [
            "example.com",
            "ftp://example.com",
            "javascript:alert(1)",
            "",
        ] {
            assert!(WebUrl::parse(bad).is_err(), "{bad:?}");
        }
    }
}
