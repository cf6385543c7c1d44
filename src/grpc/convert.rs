//! Wire ↔ domain. Input is parsed into validated domain types here, once,
//! collecting every bad field so one INVALID_ARGUMENT names them all. Output
//! is built from domain types with a read mask applied.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::{
    AddressValue, ChangeKind, Company, Contact, ContactData, CustomFieldValue, DateValue, Email,
    EmailStatus, EmailValue, Field, Invalid, Limits, Name, NewValue, NoteValue, Phone, PhoneValue,
    ReadMask, Region, Rejected, Replacement, UrlValue, WebUrl, parse_date, parse_text,
};
use crate::error::{Error, FieldViolation, Result};
use crate::feed::Item;
use crate::pb;

/// Collects the violations of one request.
#[derive(Default)]
pub(crate) struct Fields {
    violations: Vec<FieldViolation>,
}

impl Fields {
    /// Keeps `result`'s value, or records its error under the path `path()`
    /// (built only when needed: most requests are valid).
    pub(crate) fn check<T>(
        &mut self,
        result: Result<T, Invalid>,
        path: impl FnOnce() -> String,
    ) -> Option<T> {
        result
            .map_err(|description| {
                self.violations
                    .push(FieldViolation::new(path(), description))
            })
            .ok()
    }

    fn text(&mut self, value: &str, max: usize, path: impl FnOnce() -> String) -> String {
        self.check(parse_text(value, max), path).unwrap_or_default()
    }

    pub(crate) fn push(&mut self, violation: FieldViolation) {
        self.violations.push(violation);
    }

    pub(crate) fn extend(&mut self, violations: Vec<FieldViolation>) {
        self.violations.extend(violations);
    }

    /// `Ok(value)` if nothing was recorded.
    pub(crate) fn finish<T>(self, value: T) -> Result<T> {
        Error::check(self.violations).map(|()| value)
    }
}

/// Whether an element's id is assigned (new values) or read from the request
/// (the element OverrideValue replaces).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ids {
    Fresh,
    Given,
}

/// What an element parser needs besides the element.
pub(crate) struct ValueContext<'a> {
    pub fields: &'a mut Fields,
    pub ids: Ids,
    pub region: Region,
    pub now: DateTime<Utc>,
}

impl ValueContext<'_> {
    fn id(&mut self, raw: &str, path: &dyn Fn() -> String) -> Uuid {
        match self.ids {
            Ids::Fresh => Uuid::new_v4(),
            Ids::Given => {
                let parsed = parse_uuid(raw);
                self.fields
                    .check(parsed, || format!("{}.id", path()))
                    .unwrap_or_default()
            }
        }
    }

    fn text(&mut self, value: &str, max: usize, path: &dyn Fn() -> String, leaf: &str) -> String {
        self.fields
            .text(value, max, || format!("{}.{leaf}", path()))
    }

    pub(crate) fn email(&mut self, v: pb::Email, path: &dyn Fn() -> String) -> Option<EmailValue> {
        let id = self.id(&v.id, path);
        let tag = self.text(&v.tag, Limits::SHORT_TEXT, path, "tag");
        let status = match pb::EmailStatus::try_from(v.status) {
            Ok(pb::EmailStatus::Unspecified) => Some(EmailStatus::Unspecified),
            Ok(pb::EmailStatus::OptOut) => Some(EmailStatus::OptOut),
            Ok(pb::EmailStatus::Transactional) => Some(EmailStatus::Transactional),
            Ok(pb::EmailStatus::Recurring) => Some(EmailStatus::Recurring),
            Err(_) => self
                .fields
                .check(Err(format!("{} is not an EmailStatus", v.status)), || {
                    format!("{}.status", path())
                }),
        };
        let email = self
            .fields
            .check(Email::parse(&v.email), || format!("{}.email", path()));
        Some(EmailValue {
            id,
            tag,
            email: email?,
            status: status?,
        })
    }

    pub(crate) fn phone(&mut self, v: pb::Phone, path: &dyn Fn() -> String) -> Option<PhoneValue> {
        let id = self.id(&v.id, path);
        let tag = self.text(&v.tag, Limits::SHORT_TEXT, path, "tag");
        let phone = self.fields.check(Phone::parse(&v.phone, self.region), || {
            format!("{}.phone", path())
        });
        Some(PhoneValue {
            id,
            tag,
            phone: phone?,
        })
    }

    pub(crate) fn address(
        &mut self,
        v: pb::Address,
        path: &dyn Fn() -> String,
    ) -> Option<AddressValue> {
        let max = Limits::SHORT_TEXT;
        let value = AddressValue {
            id: self.id(&v.id, path),
            tag: self.text(&v.tag, max, path, "tag"),
            address: self.text(&v.address, max, path, "address"),
            neighborhood: self.text(&v.neighborhood, max, path, "neighborhood"),
            city: self.text(&v.city, max, path, "city"),
            region: self.text(&v.region, max, path, "region"),
            country: self.text(&v.country, max, path, "country"),
            postal_code: self.text(&v.postal_code, max, path, "postal_code"),
        };
        let parts = [
            &value.address,
            &value.neighborhood,
            &value.city,
            &value.region,
            &value.country,
            &value.postal_code,
        ];
        if parts.iter().all(|p| p.is_empty()) {
            self.fields.push(FieldViolation::new(
                path(),
                "an address needs at least one non-empty part",
            ));
        }
        Some(value)
    }

    pub(crate) fn url(&mut self, v: pb::Url, path: &dyn Fn() -> String) -> Option<UrlValue> {
        let id = self.id(&v.id, path);
        let tag = self.text(&v.tag, Limits::SHORT_TEXT, path, "tag");
        let url = self
            .fields
            .check(WebUrl::parse(&v.url), || format!("{}.url", path()));
        Some(UrlValue { id, tag, url: url? })
    }

    pub(crate) fn date(
        &mut self,
        v: pb::ContactDate,
        path: &dyn Fn() -> String,
    ) -> Option<DateValue> {
        let id = self.id(&v.id, path);
        let tag = self.text(&v.tag, Limits::SHORT_TEXT, path, "tag");
        let date = self
            .fields
            .check(parse_date(&v.date), || format!("{}.date", path()));
        Some(DateValue {
            id,
            tag,
            date: date?,
        })
    }

    pub(crate) fn note(&mut self, v: pb::Note, path: &dyn Fn() -> String) -> Option<NoteValue> {
        let id = self.id(&v.id, path);
        let content = self.text(&v.content, Limits::NOTE, path, "content");
        if content.is_empty() {
            self.fields.push(FieldViolation::new(
                format!("{}.content", path()),
                "is required",
            ));
        }
        Some(NoteValue {
            id,
            content,
            modify_time: self.now,
        })
    }

    pub(crate) fn custom_field(
        &mut self,
        v: pb::CustomField,
        path: &dyn Fn() -> String,
    ) -> Option<CustomFieldValue> {
        let id = self.id(&v.id, path);
        let field = self.text(&v.field, Limits::SHORT_TEXT, path, "field");
        if field.is_empty() {
            self.fields.push(FieldViolation::new(
                format!("{}.field", path()),
                "is required",
            ));
        }
        let value = self.text(&v.value, Limits::MEDIUM_TEXT, path, "value");
        Some(CustomFieldValue { id, field, value })
    }

    pub(crate) fn tag(&mut self, v: &str, path: &dyn Fn() -> String) -> Option<String> {
        let tag = self.fields.text(v, Limits::SHORT_TEXT, path);
        if tag.is_empty() {
            self.fields.push(FieldViolation::new(path(), "is required"));
        }
        Some(tag)
    }

    pub(crate) fn name(&mut self, v: pb::Name, prefix: &str) -> Name {
        let mut text = |value: &str, leaf: &str| {
            self.fields
                .text(value, Limits::SHORT_TEXT, || format!("{prefix}name.{leaf}"))
        };
        Name {
            prefix: text(&v.prefix, "prefix"),
            first: text(&v.first, "first"),
            middle: text(&v.middle, "middle"),
            last: text(&v.last, "last"),
            suffix: text(&v.suffix, "suffix"),
        }
    }

    pub(crate) fn company(&mut self, v: pb::Company, prefix: &str) -> Company {
        let mut text = |value: &str, leaf: &str| {
            self.fields.text(value, Limits::SHORT_TEXT, || {
                format!("{prefix}company.{leaf}")
            })
        };
        Company {
            name: text(&v.name, "name"),
            role: text(&v.role, "role"),
        }
    }

    /// An empty picture means "none"; anything else must be an http(s) URL.
    pub(crate) fn picture(&mut self, v: &str, path: impl FnOnce() -> String) -> String {
        if v.trim().is_empty() {
            return String::new();
        }
        self.fields
            .check(WebUrl::parse(v), path)
            .map(|u| u.as_str().to_owned())
            .unwrap_or_default()
    }

    /// Parses the contact of a Reconcile (`prefix` is `contact.`). Output-only
    /// fields are ignored; every value gets a fresh id.
    pub(crate) fn contact(&mut self, v: pb::Contact, prefix: &str) -> ContactData {
        fn array<'c, T, U>(
            cx: &mut ValueContext<'c>,
            values: Vec<T>,
            prefix: &str,
            name: &str,
            mut parse: impl FnMut(&mut ValueContext<'c>, T, &dyn Fn() -> String) -> Option<U>,
        ) -> Vec<U> {
            if values.len() > Limits::VALUES_PER_ARRAY {
                cx.fields.push(FieldViolation::new(
                    format!("{prefix}{name}"),
                    format!(
                        "holds {} values; the limit is {}",
                        values.len(),
                        Limits::VALUES_PER_ARRAY
                    ),
                ));
                return Vec::new();
            }
            values
                .into_iter()
                .enumerate()
                .filter_map(|(i, value)| parse(cx, value, &|| format!("{prefix}{name}[{i}]")))
                .collect()
        }
        ContactData {
            name: self.name(v.name.unwrap_or_default(), prefix),
            company: self.company(v.company.unwrap_or_default(), prefix),
            picture: self.picture(&v.picture, || format!("{prefix}picture")),
            emails: array(self, v.emails, prefix, "emails", Self::email),
            phones: array(self, v.phones, prefix, "phones", Self::phone),
            addresses: array(self, v.addresses, prefix, "addresses", Self::address),
            urls: array(self, v.urls, prefix, "urls", Self::url),
            dates: array(self, v.dates, prefix, "dates", Self::date),
            notes: array(self, v.notes, prefix, "notes", Self::note),
            custom_fields: array(
                self,
                v.custom_fields,
                prefix,
                "custom_fields",
                Self::custom_field,
            ),
            tags: array(self, v.tags, prefix, "tags", |cx, tag, path| {
                cx.tag(&tag, path)
            }),
        }
    }

    pub(crate) fn new_value(
        &mut self,
        v: Option<pb::add_value_request::Value>,
    ) -> Option<NewValue> {
        use pb::add_value_request::Value;
        let Some(v) = v else {
            self.fields.push(FieldViolation::new(
                "value",
                "give one value: email, phone, address, url, date, note, custom_field or tag",
            ));
            return None;
        };
        Some(match v {
            Value::Email(v) => NewValue::Email(self.email(v, &|| "email".into())?),
            Value::Phone(v) => NewValue::Phone(self.phone(v, &|| "phone".into())?),
            Value::Address(v) => NewValue::Address(self.address(v, &|| "address".into())?),
            Value::Url(v) => NewValue::Url(self.url(v, &|| "url".into())?),
            Value::Date(v) => NewValue::Date(self.date(v, &|| "date".into())?),
            Value::Note(v) => NewValue::Note(self.note(v, &|| "note".into())?),
            Value::CustomField(v) => {
                NewValue::CustomField(self.custom_field(v, &|| "custom_field".into())?)
            }
            Value::Tag(v) => NewValue::Tag(self.tag(&v, &|| "tag".into())?),
        })
    }

    pub(crate) fn replacement(
        &mut self,
        v: Option<pb::override_value_request::Value>,
    ) -> Option<Replacement> {
        use pb::override_value_request::Value;
        let Some(v) = v else {
            self.fields.push(FieldViolation::new(
                "value",
                "give one value: name, company, picture, email, phone, address, url, date, note or custom_field",
            ));
            return None;
        };
        Some(match v {
            Value::Name(v) => Replacement::Name(self.name(v, "")),
            Value::Company(v) => Replacement::Company(self.company(v, "")),
            Value::Picture(v) => Replacement::Picture(self.picture(&v, || "picture".into())),
            Value::Email(v) => Replacement::Email(self.email(v, &|| "email".into())?),
            Value::Phone(v) => Replacement::Phone(self.phone(v, &|| "phone".into())?),
            Value::Address(v) => Replacement::Address(self.address(v, &|| "address".into())?),
            Value::Url(v) => Replacement::Url(self.url(v, &|| "url".into())?),
            Value::Date(v) => Replacement::Date(self.date(v, &|| "date".into())?),
            Value::Note(v) => Replacement::Note(self.note(v, &|| "note".into())?),
            Value::CustomField(v) => {
                Replacement::CustomField(self.custom_field(v, &|| "custom_field".into())?)
            }
        })
    }
}

pub(crate) fn parse_uuid(raw: &str) -> Result<Uuid, Invalid> {
    if raw.trim().is_empty() {
        return Err("is required".into());
    }
    Uuid::try_parse(raw.trim()).map_err(|_| format!("{raw:?} is not a UUID"))
}

/// The read mask of a request; `None` on the wire selects everything.
pub(crate) fn read_mask(
    fields: &mut Fields,
    name: &str,
    mask: Option<prost_types::FieldMask>,
) -> ReadMask {
    let paths = mask.map(|m| m.paths).unwrap_or_default();
    ReadMask::parse(name, &paths).unwrap_or_else(|violations| {
        fields.extend(violations);
        ReadMask::ALL
    })
}

pub(crate) fn timestamp(time: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    }
}

/// The wire form of a contact with only the fields of `mask` (plus id and etag).
pub(crate) fn contact_to_pb(contact: Contact, mask: ReadMask) -> pb::Contact {
    let etag = contact.etag();
    let Contact {
        id,
        data,
        create_time,
        update_time,
        ..
    } = contact;
    let keep = |field: Field| mask.contains(field);
    let pick = |field: Field, value: String| if keep(field) { value } else { String::new() };
    fn list<T, U: From<T>>(keep: bool, values: Vec<T>) -> Vec<U> {
        if keep {
            values.into_iter().map(U::from).collect()
        } else {
            Vec::new()
        }
    }
    let ContactData {
        name,
        company,
        picture,
        emails,
        phones,
        addresses,
        urls,
        dates,
        notes,
        custom_fields,
        tags,
    } = data;
    // An empty group is left out rather than sent as `{}`.
    let name = pb::Name {
        prefix: pick(Field::NamePrefix, name.prefix),
        first: pick(Field::NameFirst, name.first),
        middle: pick(Field::NameMiddle, name.middle),
        last: pick(Field::NameLast, name.last),
        suffix: pick(Field::NameSuffix, name.suffix),
    };
    let company = pb::Company {
        name: pick(Field::CompanyName, company.name),
        role: pick(Field::CompanyRole, company.role),
    };
    pb::Contact {
        id: id.to_string(),
        name: (name != pb::Name::default()).then_some(name),
        company: (company != pb::Company::default()).then_some(company),
        picture: pick(Field::Picture, picture),
        emails: list(keep(Field::Emails), emails),
        phones: list(keep(Field::Phones), phones),
        addresses: list(keep(Field::Addresses), addresses),
        urls: list(keep(Field::Urls), urls),
        dates: list(keep(Field::Dates), dates),
        notes: list(keep(Field::Notes), notes),
        custom_fields: list(keep(Field::CustomFields), custom_fields),
        tags: list(keep(Field::Tags), tags),
        create_time: keep(Field::CreateTime).then(|| timestamp(create_time)),
        update_time: keep(Field::UpdateTime).then(|| timestamp(update_time)),
        etag,
    }
}

/// The rejected scalar values of a Reconcile as a partial contact.
pub(crate) fn rejected_to_pb(
    rejected: Rejected,
) -> (Option<pb::Contact>, Option<prost_types::FieldMask>) {
    if rejected.paths.is_empty() {
        return (None, None);
    }
    let ContactData {
        name,
        company,
        picture,
        ..
    } = rejected.data;
    let name_rejected = rejected.paths.iter().any(|p| p.starts_with("name."));
    let company_rejected = rejected.paths.iter().any(|p| p.starts_with("company."));
    let contact = pb::Contact {
        name: name_rejected.then_some(pb::Name {
            prefix: name.prefix,
            first: name.first,
            middle: name.middle,
            last: name.last,
            suffix: name.suffix,
        }),
        company: company_rejected.then_some(pb::Company {
            name: company.name,
            role: company.role,
        }),
        picture,
        ..Default::default()
    };
    let paths = rejected.paths.iter().map(|p| p.to_string()).collect();
    (Some(contact), Some(prost_types::FieldMask { paths }))
}

impl From<EmailValue> for pb::Email {
    fn from(v: EmailValue) -> Self {
        let status = match v.status {
            EmailStatus::Unspecified => pb::EmailStatus::Unspecified,
            EmailStatus::OptOut => pb::EmailStatus::OptOut,
            EmailStatus::Transactional => pb::EmailStatus::Transactional,
            EmailStatus::Recurring => pb::EmailStatus::Recurring,
        };
        pb::Email {
            id: v.id.to_string(),
            tag: v.tag,
            email: v.email.as_str().to_owned(),
            status: status.into(),
        }
    }
}

impl From<PhoneValue> for pb::Phone {
    fn from(v: PhoneValue) -> Self {
        pb::Phone {
            id: v.id.to_string(),
            tag: v.tag,
            phone: v.phone.as_str().to_owned(),
            normalized_phone: v.phone.e164().to_owned(),
        }
    }
}

impl From<AddressValue> for pb::Address {
    fn from(v: AddressValue) -> Self {
        pb::Address {
            id: v.id.to_string(),
            tag: v.tag,
            address: v.address,
            neighborhood: v.neighborhood,
            city: v.city,
            region: v.region,
            country: v.country,
            postal_code: v.postal_code,
        }
    }
}

impl From<UrlValue> for pb::Url {
    fn from(v: UrlValue) -> Self {
        pb::Url {
            id: v.id.to_string(),
            tag: v.tag,
            url: v.url.as_str().to_owned(),
        }
    }
}

impl From<DateValue> for pb::ContactDate {
    fn from(v: DateValue) -> Self {
        pb::ContactDate {
            id: v.id.to_string(),
            tag: v.tag,
            date: v.date.format("%Y-%m-%d").to_string(),
        }
    }
}

impl From<NoteValue> for pb::Note {
    fn from(v: NoteValue) -> Self {
        pb::Note {
            id: v.id.to_string(),
            content: v.content,
            modify_time: Some(timestamp(v.modify_time)),
        }
    }
}

impl From<CustomFieldValue> for pb::CustomField {
    fn from(v: CustomFieldValue) -> Self {
        pb::CustomField {
            id: v.id.to_string(),
            field: v.field,
            value: v.value,
        }
    }
}

/// A feed item as the wire event; `include` adds the contact after the change.
pub(crate) fn event_to_pb(item: &Item, include: bool, mask: ReadMask) -> pb::ContactEvent {
    let cursor = item.cursor().to_owned();
    match item {
        Item::Heartbeat(_) => pb::ContactEvent {
            cursor,
            r#type: pb::EventType::Heartbeat.into(),
            event_time: Some(timestamp(Utc::now())),
            ..Default::default()
        },
        Item::Change(event, _) => {
            let change = &event.change;
            let kind = match change.kind {
                ChangeKind::Created => pb::EventType::Created,
                ChangeKind::Updated => pb::EventType::Updated,
                ChangeKind::Deleted => pb::EventType::Deleted,
            };
            let deleted = change.kind == ChangeKind::Deleted;
            pb::ContactEvent {
                cursor,
                r#type: kind.into(),
                contact_id: event.contact_id.clone(),
                changed_fields: (!deleted).then(|| prost_types::FieldMask {
                    paths: change.changed_fields.clone(),
                }),
                contact: include
                    .then(|| change.contact().cloned().map(|c| contact_to_pb(c, mask)))
                    .flatten(),
                event_time: Some(timestamp(change.time)),
                etag: event.etag.clone(),
            }
        }
    }
}
