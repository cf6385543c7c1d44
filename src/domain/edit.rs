//! The single-value edits of AddValue and OverrideValue, as pure functions on
//! [`ContactData`]; storage runs them inside the transaction that holds the row.

use super::contact::{Company, ContactData, Name};
use super::text::Limits;
use super::values::{
    AddressValue, ArrayValue, CustomFieldValue, DateValue, EmailValue, NoteValue, PhoneValue,
    UrlValue,
};
use crate::error::{Error, Result};

/// A value to append to an array property.
#[derive(Debug, Clone)]
pub enum NewValue {
    Email(EmailValue),
    Phone(PhoneValue),
    Address(AddressValue),
    Url(UrlValue),
    Date(DateValue),
    Note(NoteValue),
    CustomField(CustomFieldValue),
    Tag(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddOutcome {
    Added {
        value_id: String,
        field: &'static str,
    },
    AlreadyPresent {
        value_id: String,
    },
}

/// A replacement approved by the user: a whole scalar group, or one array
/// element named by its id (the id inside the value).
#[derive(Debug, Clone)]
pub enum Replacement {
    Name(Name),
    Company(Company),
    Picture(String),
    Email(EmailValue),
    Phone(PhoneValue),
    Address(AddressValue),
    Url(UrlValue),
    Date(DateValue),
    Note(NoteValue),
    CustomField(CustomFieldValue),
}

impl NewValue {
    /// The matching key a new email or phone adds, which writers lock first.
    pub fn key(&self) -> Option<String> {
        match self {
            Self::Email(e) => Some(e.email.key()),
            Self::Phone(p) => Some(p.phone.e164().to_owned()),
            _ => None,
        }
    }

    /// Appends the value unless the same value is there; `Err` if the array is full.
    pub fn add_to(self, data: &mut ContactData) -> Result<AddOutcome> {
        match self {
            Self::Email(v) => add(&mut data.emails, v, "email", "emails"),
            Self::Phone(v) => add(&mut data.phones, v, "phone", "phones"),
            Self::Address(v) => add(&mut data.addresses, v, "address", "addresses"),
            Self::Url(v) => add(&mut data.urls, v, "url", "urls"),
            Self::Date(v) => add(&mut data.dates, v, "date", "dates"),
            Self::Note(v) => add(&mut data.notes, v, "note", "notes"),
            Self::CustomField(v) => {
                add(&mut data.custom_fields, v, "custom_field", "custom_fields")
            }
            Self::Tag(v) => add(&mut data.tags, v, "tag", "tags"),
        }
    }
}

fn add<T: ArrayValue>(
    list: &mut Vec<T>,
    value: T,
    request_field: &str,
    path: &'static str,
) -> Result<AddOutcome> {
    if let Some(existing) = list.iter().find(|e| e.same_as(&value)) {
        return Ok(AddOutcome::AlreadyPresent {
            value_id: existing.value_id(),
        });
    }
    if list.len() >= Limits::VALUES_PER_ARRAY {
        return Err(Error::invalid(
            request_field,
            format!(
                "the contact already holds the maximum of {} {path}",
                Limits::VALUES_PER_ARRAY
            ),
        ));
    }
    let value_id = value.value_id();
    list.push(value);
    Ok(AddOutcome::Added {
        value_id,
        field: path,
    })
}

impl Replacement {
    /// The matching key a replacement email or phone adds, which writers lock first.
    pub fn key(&self) -> Option<String> {
        match self {
            Self::Email(e) => Some(e.email.key()),
            Self::Phone(p) => Some(p.phone.e164().to_owned()),
            _ => None,
        }
    }

    /// Applies the replacement; returns the changed path, or `None` if the
    /// contact already held exactly this.
    pub fn apply(self, data: &mut ContactData) -> Result<Option<&'static str>> {
        fn set<T: PartialEq>(slot: &mut T, value: T, path: &'static str) -> Option<&'static str> {
            (*slot != value).then(|| {
                *slot = value;
                path
            })
        }
        match self {
            Self::Name(v) => Ok(set(&mut data.name, v, "name")),
            Self::Company(v) => Ok(set(&mut data.company, v, "company")),
            Self::Picture(v) => Ok(set(&mut data.picture, v, "picture")),
            Self::Email(v) => replace(&mut data.emails, v, "emails"),
            Self::Phone(v) => replace(&mut data.phones, v, "phones"),
            Self::Address(v) => replace(&mut data.addresses, v, "addresses"),
            Self::Url(v) => replace(&mut data.urls, v, "urls"),
            Self::Date(v) => replace(&mut data.dates, v, "dates"),
            Self::Note(mut v) => {
                // A note's modify_time is the time of this call; the same text is no change.
                if let Some(old) = data
                    .notes
                    .iter()
                    .find(|n| n.id == v.id && n.content == v.content)
                {
                    v.modify_time = old.modify_time;
                }
                replace(&mut data.notes, v, "notes")
            }
            Self::CustomField(v) => replace(&mut data.custom_fields, v, "custom_fields"),
        }
    }
}

fn replace<T: ArrayValue + PartialEq>(
    list: &mut [T],
    value: T,
    path: &'static str,
) -> Result<Option<&'static str>> {
    let id = value.id();
    let Some(index) = list.iter().position(|e| e.id() == id) else {
        let id = id.map(|id| id.to_string()).unwrap_or_default();
        return Err(Error::NotFound(format!("{path} element {id}")));
    };
    if let Some(other) = list
        .iter()
        .enumerate()
        .find(|(i, e)| *i != index && e.same_as(&value))
    {
        return Err(Error::AlreadyExists(format!(
            "the contact already holds this value in {path} (element {})",
            other.1.value_id()
        )));
    }
    if list[index] == value {
        return Ok(None);
    }
    list[index] = value;
    Ok(Some(path))
}
