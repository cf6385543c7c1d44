use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::text::{Limits, same_text};
use super::values::{
    AddressValue, ArrayValue, CustomFieldValue, DateValue, EmailValue, NoteValue, PhoneValue,
    UrlValue,
};
use crate::error::FieldViolation;

pub type ContactId = Uuid;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Name {
    pub prefix: String,
    pub first: String,
    pub middle: String,
    pub last: String,
    pub suffix: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Company {
    pub name: String,
    pub role: String,
}

/// What a contact holds, without its identity and bookkeeping.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContactData {
    pub name: Name,
    pub company: Company,
    pub picture: String,
    pub emails: Vec<EmailValue>,
    pub phones: Vec<PhoneValue>,
    pub addresses: Vec<AddressValue>,
    pub urls: Vec<UrlValue>,
    pub dates: Vec<DateValue>,
    pub notes: Vec<NoteValue>,
    pub custom_fields: Vec<CustomFieldValue>,
    pub tags: Vec<String>,
}

/// A stored contact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contact {
    pub id: ContactId,
    /// Bumped by every change; see [`etag_of`].
    pub version: i64,
    pub data: ContactData,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
}

impl Contact {
    pub fn etag(&self) -> String {
        etag_of(self.id, self.version)
    }
}

/// The opaque etag of a contact version. Derived from the id as well, so an
/// etag read from one contact never passes the check of another.
pub fn etag_of(id: ContactId, version: i64) -> String {
    let digest = Sha256::new()
        .chain_update(id.as_bytes())
        .chain_update(version.to_be_bytes())
        .finalize();
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut etag = String::with_capacity(16);
    for byte in &digest[..8] {
        etag.push(char::from(HEX[usize::from(byte >> 4)]));
        etag.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    etag
}

/// What a change record says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i16)]
pub enum ChangeKind {
    Created = 1,
    Updated = 2,
    Deleted = 3,
}

impl TryFrom<i16> for ChangeKind {
    type Error = i16;

    fn try_from(kind: i16) -> Result<Self, i16> {
        match kind {
            1 => Ok(Self::Created),
            2 => Ok(Self::Updated),
            3 => Ok(Self::Deleted),
            other => Err(other),
        }
    }
}

/// The scalar leaves: filled when empty, never changed by Reconcile once set.
/// In the order of [`ContactData::scalars`].
pub const SCALAR_PATHS: [&str; 8] = [
    "name.prefix",
    "name.first",
    "name.middle",
    "name.last",
    "name.suffix",
    "company.name",
    "company.role",
    "picture",
];

/// Names and company compare case-insensitively ("DANA" is no news about
/// "Dana"); the picture, the last scalar, is a URL and compares exactly.
fn same_scalar(index: usize, a: &str, b: &str) -> bool {
    if index == SCALAR_PATHS.len() - 1 {
        a == b
    } else {
        same_text(a, b)
    }
}

/// The reported values Reconcile did not apply, and their paths.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rejected {
    pub data: ContactData,
    pub paths: Vec<&'static str>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct MergeOutcome {
    /// Paths of what changed, e.g. `name.first`, `emails`; empty for a no-op.
    pub changed_fields: Vec<&'static str>,
    pub rejected: Rejected,
}

/// Calls `$body!(path, field)` for every array property.
macro_rules! for_each_array {
    ($body:ident) => {
        $body!("emails", emails);
        $body!("phones", phones);
        $body!("addresses", addresses);
        $body!("urls", urls);
        $body!("dates", dates);
        $body!("notes", notes);
        $body!("custom_fields", custom_fields);
        $body!("tags", tags);
    };
}

impl ContactData {
    /// The scalar leaves, in the order of [`SCALAR_PATHS`].
    pub fn scalars(&self) -> [&String; 8] {
        let (n, c) = (&self.name, &self.company);
        [
            &n.prefix,
            &n.first,
            &n.middle,
            &n.last,
            &n.suffix,
            &c.name,
            &c.role,
            &self.picture,
        ]
    }

    fn scalars_mut(&mut self) -> [&mut String; 8] {
        let (n, c) = (&mut self.name, &mut self.company);
        [
            &mut n.prefix,
            &mut n.first,
            &mut n.middle,
            &mut n.last,
            &mut n.suffix,
            &mut c.name,
            &mut c.role,
            &mut self.picture,
        ]
    }

    /// Merges what an app reported: empty scalars are filled, equal ones kept,
    /// different ones rejected; array values are added unless the same value is
    /// already there.
    pub fn merge(&mut self, mut incoming: ContactData) -> MergeOutcome {
        let mut outcome = MergeOutcome::default();
        let Rejected {
            data: rejected,
            paths: rejected_paths,
        } = &mut outcome.rejected;
        let leaves = self
            .scalars_mut()
            .into_iter()
            .zip(incoming.scalars_mut())
            .zip(rejected.scalars_mut());
        for (i, ((current, new), rejected)) in leaves.enumerate() {
            if new.is_empty() {
                continue;
            }
            if current.is_empty() {
                *current = std::mem::take(new);
                outcome.changed_fields.push(SCALAR_PATHS[i]);
            } else if !same_scalar(i, current, new) {
                *rejected = std::mem::take(new);
                rejected_paths.push(SCALAR_PATHS[i]);
            }
        }
        macro_rules! merge_array {
            ($path:literal, $field:ident) => {
                if merge_values(&mut self.$field, std::mem::take(&mut incoming.$field)) {
                    outcome.changed_fields.push($path);
                }
            };
        }
        for_each_array!(merge_array);
        outcome
    }

    /// The paths of every field that holds something (what a CREATED event changed).
    pub fn present_fields(&self) -> Vec<&'static str> {
        let mut fields: Vec<&'static str> = SCALAR_PATHS
            .into_iter()
            .zip(self.scalars())
            .filter(|(_, value)| !value.is_empty())
            .map(|(path, _)| path)
            .collect();
        macro_rules! present {
            ($path:literal, $field:ident) => {
                if !self.$field.is_empty() {
                    fields.push($path);
                }
            };
        }
        for_each_array!(present);
        fields
    }

    /// Checks every array stays within [`Limits::VALUES_PER_ARRAY`]; `prefix` is
    /// the request path of the contact (e.g. `contact.`), or empty.
    pub fn check_limits(&self, prefix: &str) -> Vec<FieldViolation> {
        let mut violations = Vec::new();
        macro_rules! check {
            ($path:literal, $field:ident) => {
                if self.$field.len() > Limits::VALUES_PER_ARRAY {
                    violations.push(FieldViolation::new(
                        format!("{prefix}{}", $path),
                        format!(
                            "a contact holds at most {} {}; this one would hold {}",
                            Limits::VALUES_PER_ARRAY,
                            $path,
                            self.$field.len()
                        ),
                    ));
                }
            };
        }
        for_each_array!(check);
        violations
    }

    /// The matching keys of this contact: lower-cased emails and E.164 phones.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .emails
            .iter()
            .map(|e| e.email.key())
            .chain(self.phones.iter().map(|p| p.phone.e164().to_owned()))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }
}

/// Appends the values not already present; true if anything was added.
fn merge_values<T: ArrayValue>(existing: &mut Vec<T>, incoming: Vec<T>) -> bool {
    let before = existing.len();
    for value in incoming {
        if !existing.iter().any(|e| e.same_as(&value)) {
            existing.push(value);
        }
    }
    existing.len() != before
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Email, EmailStatus};

    fn email(address: &str) -> EmailValue {
        EmailValue {
            id: Uuid::new_v4(),
            tag: String::new(),
            email: Email::parse(address).unwrap(),
            status: EmailStatus::Unspecified,
        }
    }

    #[test]
    fn merge_fills_empty_scalars_keeps_equal_ones_and_rejects_different_ones() {
        let mut current = ContactData::default();
        current.name.first = "Dana".into();
        current.company.name = "Acme".into();
        let mut incoming = ContactData::default();
        incoming.name.first = "DANA".into();
        incoming.name.last = "Levi".into();
        incoming.company.name = "Globex".into();

        let outcome = current.merge(incoming);

        assert_eq!(current.name.first, "Dana");
        assert_eq!(current.name.last, "Levi");
        assert_eq!(current.company.name, "Acme");
        assert_eq!(outcome.changed_fields, vec!["name.last"]);
        assert_eq!(outcome.rejected.paths, vec!["company.name"]);
        assert_eq!(outcome.rejected.data.company.name, "Globex");
    }

    #[test]
    fn merge_adds_only_array_values_not_already_present() {
        let mut current = ContactData {
            emails: vec![email("dana@example.com")],
            ..Default::default()
        };
        let incoming = ContactData {
            emails: vec![
                email("DANA@example.com"),
                email("d@work.com"),
                email("d@work.com"),
            ],
            ..Default::default()
        };
        let outcome = current.merge(incoming);
        assert_eq!(current.emails.len(), 2);
        assert_eq!(outcome.changed_fields, vec!["emails"]);
        assert!(
            current
                .clone()
                .merge(current.clone())
                .changed_fields
                .is_empty()
        );
    }

    #[test]
    fn etags_differ_across_versions_and_across_contacts() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        assert_eq!(etag_of(a, 1), etag_of(a, 1));
        assert_ne!(etag_of(a, 1), etag_of(a, 2));
        assert_ne!(etag_of(a, 1), etag_of(b, 1));
    }

    #[test]
    fn an_etag_is_the_first_eight_bytes_of_its_digest_in_lowercase_hex() {
        // Pinned, so that etags clients hold stay valid across releases.
        assert_eq!(etag_of(Uuid::nil(), 1), "ed8b7b2c2c6bae3a");
        let id = Uuid::parse_str("67e55044-10b1-426f-9247-bb680e5fe0c8").unwrap();
        assert_eq!(etag_of(id, 42), "efed308deb4c7f22");
    }
}
