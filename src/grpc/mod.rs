//! The gRPC service: authenticate, parse the request into domain types, call
//! storage, convert the result. Every handler returns the crate's [`Error`],
//! which becomes a `Status` in exactly one place.

pub mod codec;
mod convert;
pub mod frames;
pub mod page_token;
pub mod server;
pub mod socket;
pub mod watch;

use std::pin::Pin;

use chrono::Utc;
use tonic::{Request, Response, Status};

use crate::auth::{Authenticator, Caller, Scope};
use crate::domain::{AddOutcome, Contact, Email, Limits, Phone, ReadMask, Region, parse_text};
use crate::error::{Error, FieldViolation, Result};
use crate::feed::Feed;
use crate::feed::cursor::Cursor;
use crate::pb::{self, contacts_service_server::ContactsService};
use crate::storage::sql::ListFilter;
use crate::storage::{Reconciled, Store};
use convert::{Fields, Ids, ValueContext, contact_to_pb, parse_uuid, read_mask, rejected_to_pb};

pub struct ContactsApi {
    store: Store,
    auth: Authenticator,
    default_region: Region,
    feed: Feed,
}

impl ContactsApi {
    pub fn new(store: Store, auth: Authenticator, default_region: Region, feed: Feed) -> Self {
        Self {
            store,
            auth,
            default_region,
            feed,
        }
    }

    async fn caller<T>(&self, request: &Request<T>, scope: Scope) -> Result<Caller> {
        let caller = self.auth.caller(request.metadata()).await?;
        caller.require(scope)?;
        Ok(caller)
    }

    /// The contact as the caller may see it: whole with the read scope, else not at all.
    fn visible(caller: &Caller, contact: Contact) -> Option<pb::Contact> {
        caller
            .can_read
            .then(|| contact_to_pb(contact, ReadMask::ALL))
    }

    fn region(&self, fields: &mut Fields, raw: &str) -> Region {
        fields
            .check(Region::parse_or(raw, self.default_region), || {
                "default_region".into()
            })
            .unwrap_or(self.default_region)
    }

    async fn reconcile(
        &self,
        request: Request<pb::ReconcileRequest>,
    ) -> Result<pb::ReconcileResponse> {
        let caller = self.caller(&request, Scope::Write).await?;
        let request = request.into_inner();
        let mut fields = Fields::default();
        let region = self.region(&mut fields, &request.default_region);
        let Some(contact) = request.contact else {
            return Err(Error::invalid("contact", "is required"));
        };
        let mut cx = ValueContext {
            fields: &mut fields,
            ids: Ids::Fresh,
            region,
            now: Utc::now(),
        };
        let data = cx.contact(contact, "contact.");
        if data.emails.is_empty() && data.phones.is_empty() {
            fields.push(crate::error::FieldViolation::new(
                "contact.emails",
                "a reported contact needs at least one email or phone to be matched by",
            ));
        }
        let data = fields.finish(data)?;

        let Reconciled {
            contact,
            created,
            rejected,
        } = self
            .store
            .reconcile(caller.site_id, &caller.app, data)
            .await?;
        let (rejected, rejected_fields) = rejected_to_pb(rejected);
        Ok(pb::ReconcileResponse {
            contact_id: contact.id.to_string(),
            created,
            etag: contact.etag(),
            contact: Self::visible(&caller, contact),
            rejected,
            rejected_fields,
        })
    }

    async fn get_contact(&self, request: Request<pb::GetContactRequest>) -> Result<pb::Contact> {
        let caller = self.caller(&request, Scope::Read).await?;
        let request = request.into_inner();
        let mut fields = Fields::default();
        let id = fields.check(parse_uuid(&request.id), || "id".into());
        let mask = read_mask(&mut fields, "read_mask", request.read_mask);
        let id = fields.finish(id)?.unwrap_or_default();
        let contact = self.store.get_contact(caller.site_id, id, mask).await?;
        let contact = contact.ok_or_else(|| Error::NotFound(format!("contact {id}")))?;
        Ok(contact_to_pb(contact, mask))
    }

    async fn list_contacts(
        &self,
        request: Request<pb::ListContactsRequest>,
    ) -> Result<pb::ListContactsResponse> {
        const DEFAULT_PAGE: i64 = 25;
        const MAX_PAGE: i64 = 500;
        let caller = self.caller(&request, Scope::Read).await?;
        let request = request.into_inner();
        let mut fields = Fields::default();
        let mask = read_mask(&mut fields, "read_mask", request.read_mask);
        let region = self.region(&mut fields, &request.default_region);
        let given = |value: &str| {
            Some(value.trim())
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let filter = ListFilter {
            email: given(&request.email)
                .and_then(|e| fields.check(Email::parse(&e), || "email".into()))
                .map(|e| e.key()),
            phone: given(&request.phone)
                .and_then(|p| fields.check(Phone::parse(&p, region), || "phone".into()))
                .map(|p| p.e164().to_owned()),
            first_name: given(&request.first_name).and_then(|n| {
                fields.check(parse_text(&n, Limits::SHORT_TEXT), || "first_name".into())
            }),
            last_name: given(&request.last_name).and_then(|n| {
                fields.check(parse_text(&n, Limits::SHORT_TEXT), || "last_name".into())
            }),
        };
        let page_size = match i64::from(request.page_size) {
            size if size < 0 => {
                fields.push(FieldViolation::new("page_size", "must not be negative"));
                0
            }
            0 => DEFAULT_PAGE,
            size => size.min(MAX_PAGE),
        };
        let fingerprint = page_token::fingerprint(&filter);
        let secret = self.store.secret();
        let continued = given(&request.page_token).and_then(|token| {
            fields.check(
                page_token::decode(secret, caller.site_id, fingerprint, &token),
                || "page_token".into(),
            )
        });
        fields.finish(())?;
        let after_seq = continued.as_ref().map_or(0, |page| page.after_seq);

        // One more than a page tells whether another page follows.
        let (mut rows, snapshot) = self
            .store
            .list_contacts(caller.site_id, &filter, after_seq, page_size + 1, mask)
            .await?;
        let more = rows.len() as i64 > page_size;
        rows.truncate(page_size as usize);
        // The first page's snapshot stands for the whole listing (see page_token).
        let watch_cursor = match continued {
            Some(page) => page.watch_cursor,
            None => Cursor::from_snapshot(caller.site_id, &snapshot)?.encode(secret),
        };
        let next_page_token = match rows.last() {
            Some((_, seq)) if more => {
                let page = page_token::Page {
                    after_seq: *seq,
                    watch_cursor: watch_cursor.clone(),
                };
                page_token::encode(secret, caller.site_id, fingerprint, &page)
            }
            _ => String::new(),
        };
        Ok(pb::ListContactsResponse {
            contacts: rows
                .into_iter()
                .map(|(contact, _)| contact_to_pb(contact, mask))
                .collect(),
            next_page_token,
            watch_cursor,
        })
    }

    /// WatchContacts, with events encoded once and shared across watchers
    /// where they can be (see [`watch`]).
    pub(crate) async fn watch_encoded(
        &self,
        request: Request<pb::WatchContactsRequest>,
    ) -> Result<watch::EncodedStream> {
        let caller = self.caller(&request, Scope::Read).await?;
        let request = request.into_inner();
        let mut fields = Fields::default();
        let mask = read_mask(&mut fields, "read_mask", request.read_mask);
        let secret = self.store.secret();
        let cursor = match request.start_after.trim() {
            "" => None,
            text => fields.check(Cursor::decode(secret, caller.site_id, text), || {
                "start_after".into()
            }),
        };
        fields.finish(())?;
        let cursor = match cursor {
            Some(cursor) => {
                self.feed.check_retained(&cursor).await?;
                cursor
            }
            // A cursor at the end of the feed cannot have expired.
            None => self.feed.now(caller.site_id).await?,
        };
        let include = request.include_contact;
        let items = self.feed.watch(cursor);
        Ok(Box::pin(futures::StreamExt::map(items, move |item| {
            item.map(|item| watch::encode_event(item, include, mask))
                .map_err(Status::from)
        })))
    }

    async fn add_value(
        &self,
        request: Request<pb::AddValueRequest>,
    ) -> Result<pb::AddValueResponse> {
        let caller = self.caller(&request, Scope::Write).await?;
        let request = request.into_inner();
        let mut fields = Fields::default();
        let id = fields.check(parse_uuid(&request.contact_id), || "contact_id".into());
        let region = self.region(&mut fields, &request.default_region);
        let mut cx = ValueContext {
            fields: &mut fields,
            ids: Ids::Fresh,
            region,
            now: Utc::now(),
        };
        let value = cx.new_value(request.value);
        let (id, value) = fields.finish((id, value))?;
        let (Some(id), Some(value)) = (id, value) else {
            return Err(Error::Internal(
                "a parsed AddValue request lacks its value".into(),
            ));
        };
        let etag = Some(request.etag.as_str()).filter(|e| !e.is_empty());

        let (contact, outcome) = self
            .store
            .edit_contact(caller.site_id, &caller.app, id, etag, value.key(), |data| {
                let outcome = value.add_to(data)?;
                let changed = match &outcome {
                    AddOutcome::Added { field, .. } => vec![*field],
                    AddOutcome::AlreadyPresent { .. } => vec![],
                };
                Ok((outcome, changed))
            })
            .await?;
        let (value_id, already_present) = match outcome {
            AddOutcome::Added { value_id, .. } => (value_id, false),
            AddOutcome::AlreadyPresent { value_id } => (value_id, true),
        };
        Ok(pb::AddValueResponse {
            value_id,
            already_present,
            etag: contact.etag(),
            contact: Self::visible(&caller, contact),
        })
    }

    async fn override_value(
        &self,
        request: Request<pb::OverrideValueRequest>,
    ) -> Result<pb::OverrideValueResponse> {
        let caller = self.caller(&request, Scope::Write).await?;
        let request = request.into_inner();
        let mut fields = Fields::default();
        let id = fields.check(parse_uuid(&request.contact_id), || "contact_id".into());
        if request.etag.trim().is_empty() {
            fields.push(crate::error::FieldViolation::new(
                "etag",
                "is required: the etag of the contact the user approved the change on",
            ));
        }
        let region = self.region(&mut fields, &request.default_region);
        let mut cx = ValueContext {
            fields: &mut fields,
            ids: Ids::Given,
            region,
            now: Utc::now(),
        };
        let value = cx.replacement(request.value);
        let (id, value) = fields.finish((id, value))?;
        let (Some(id), Some(value)) = (id, value) else {
            return Err(Error::Internal(
                "a parsed OverrideValue request lacks its value".into(),
            ));
        };

        let key = value.key();
        let (contact, ()) = self
            .store
            .edit_contact(
                caller.site_id,
                &caller.app,
                id,
                Some(request.etag.trim()),
                key,
                |data| {
                    let changed = value.apply(data)?;
                    Ok(((), changed.into_iter().collect()))
                },
            )
            .await?;
        Ok(pb::OverrideValueResponse {
            etag: contact.etag(),
            contact: Self::visible(&caller, contact),
        })
    }

    async fn delete_contact(
        &self,
        request: Request<pb::DeleteContactRequest>,
    ) -> Result<pb::DeleteContactResponse> {
        let caller = self.caller(&request, Scope::Write).await?;
        let request = request.into_inner();
        let mut fields = Fields::default();
        let id = fields.check(parse_uuid(&request.id), || "id".into());
        let id = fields.finish(id)?.unwrap_or_default();
        let etag = Some(request.etag.trim()).filter(|e| !e.is_empty());
        self.store
            .delete_contact(caller.site_id, &caller.app, id, etag)
            .await?;
        Ok(pb::DeleteContactResponse {})
    }
}

/// What the generated trait would stream; never built (see `watch_contacts`).
type EventStream = Pin<Box<dyn futures::Stream<Item = Result<pb::ContactEvent, Status>> + Send>>;

#[tonic::async_trait]
impl ContactsService for ContactsApi {
    async fn reconcile(
        &self,
        request: Request<pb::ReconcileRequest>,
    ) -> Result<Response<pb::ReconcileResponse>, Status> {
        Ok(Response::new(Self::reconcile(self, request).await?))
    }

    async fn get_contact(
        &self,
        request: Request<pb::GetContactRequest>,
    ) -> Result<Response<pb::Contact>, Status> {
        Ok(Response::new(Self::get_contact(self, request).await?))
    }

    async fn list_contacts(
        &self,
        request: Request<pb::ListContactsRequest>,
    ) -> Result<Response<pb::ListContactsResponse>, Status> {
        Ok(Response::new(Self::list_contacts(self, request).await?))
    }

    async fn add_value(
        &self,
        request: Request<pb::AddValueRequest>,
    ) -> Result<Response<pb::AddValueResponse>, Status> {
        Ok(Response::new(Self::add_value(self, request).await?))
    }

    async fn override_value(
        &self,
        request: Request<pb::OverrideValueRequest>,
    ) -> Result<Response<pb::OverrideValueResponse>, Status> {
        Ok(Response::new(Self::override_value(self, request).await?))
    }

    async fn delete_contact(
        &self,
        request: Request<pb::DeleteContactRequest>,
    ) -> Result<Response<pb::DeleteContactResponse>, Status> {
        Ok(Response::new(Self::delete_contact(self, request).await?))
    }

    type WatchContactsStream = EventStream;

    async fn watch_contacts(
        &self,
        _request: Request<pb::WatchContactsRequest>,
    ) -> Result<Response<Self::WatchContactsStream>, Status> {
        // [`watch::Routes`] serves this method with shared encodings; the
        // generated service is only ever reached through it.
        Err(Error::Internal("WatchContacts is served by grpc::watch::Routes".into()).into())
    }
}
