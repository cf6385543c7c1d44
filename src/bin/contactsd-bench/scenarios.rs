//! The scenarios: for each, one RPC and the bare-SQL baseline of that RPC. The
//! baseline calls the very functions of `contactsd::storage::sql` the server
//! calls, so both paths send the same statements with the same parameters; it
//! just skips gRPC, authentication, wire parsing and the connection pool.

use std::sync::Arc;

use clap::ValueEnum;
use contactsd::domain::{
    ContactData, Email, EmailStatus, EmailValue, Name, NewValue, Phone, PhoneValue, ReadMask,
    Region, Replacement,
};
use contactsd::error::Error;
use contactsd::pb;
use contactsd::storage::readers::Readers;
use contactsd::storage::sql::ListFilter;
use contactsd::storage::{Exclusive, Tx, contacts, sql};
use uuid::Uuid;

use crate::Client;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Every call creates a contact.
    ReconcileNew,
    /// Every call matches a seeded contact by email and adds a tag.
    ReconcileMerge,
    /// GetContact of a seeded contact.
    Get,
    /// AddValue of a new tag to a seeded contact.
    AddValue,
    /// OverrideValue of a seeded contact's name with its current etag.
    Override,
    /// ListContacts by a seeded contact's email, a page of 100, mask name,emails.
    List,
    /// The first page of 100 of the whole site, mask name,emails.
    ListFirst,
    /// A page of 100 deep in the site (page 5,000, or halfway in a smaller site).
    ListDeep,
    /// Walks the whole site in pages of 500 (mask name,emails); one op is one page.
    ListScan,
    /// Watchers on the feed while writers create contacts at a steady rate:
    /// delivery, latency, and reconcile-new throughput with and without them.
    Watch,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Self::ReconcileNew => "reconcile-new",
            Self::ReconcileMerge => "reconcile-merge",
            Self::Get => "get",
            Self::AddValue => "add-value",
            Self::Override => "override",
            Self::List => "list",
            Self::ListFirst => "list-first",
            Self::ListDeep => "list-deep",
            Self::ListScan => "list-scan",
            Self::Watch => "watch",
        }
    }

    /// Whether the scenario adds values to seeded contacts (which hold at most 50 per array).
    pub fn grows_contacts(self) -> bool {
        matches!(self, Self::ReconcileMerge | Self::AddValue)
    }
}

/// The read mask of the list scenarios, as sent and as the server parses it.
const LIST_MASK: [&str; 2] = ["name", "emails"];
static LIST_MASK_PARSED: std::sync::LazyLock<ReadMask> = std::sync::LazyLock::new(|| {
    ReadMask::parse("read_mask", &LIST_MASK.map(String::from)).expect("a valid mask")
});

/// A seeded contact the scenarios aim at.
#[derive(Debug, Clone)]
pub struct Target {
    pub id: Uuid,
    pub email: Email,
    /// The email as ListContacts filters by it.
    pub email_key: String,
}

/// What one worker needs: the shared fixture and its own identity.
pub struct Worker {
    pub scenario: Scenario,
    pub site: i64,
    pub app: Arc<str>,
    pub targets: Arc<Vec<Target>>,
    pub id: usize,
    pub workers: usize,
    /// Unique per bench run, so created values never collide across runs.
    pub nonce: u32,
    /// The etags of this worker's override targets, as last seen.
    pub etags: Vec<(Uuid, String)>,
    /// Where list-deep starts: the seq before the deep page, and its token.
    pub deep_after: i64,
    pub deep_token: String,
    /// Where the baseline takes its dedicated connection, when it needs one.
    pub pool: deadpool_postgres::Pool,
    /// A list-scan walk in progress: the next page's token and seq.
    pub scan: (String, i64),
    /// Shared connections for point reads, as the server has.
    pub readers: Arc<Readers>,
}

impl Worker {
    fn target(&self, i: u64) -> &Target {
        // Workers own disjoint slices of the targets, so overrides never race.
        let n = self.targets.len() / self.workers;
        &self.targets[self.id * n + (i as usize % n.max(1))]
    }

    pub fn new_contact(&self, i: u64) -> ContactData {
        let line =
            (u64::from(self.nonce) * 31 + self.id as u64 * 1_000_003 + i) % 9_000_000 + 1_000_000;
        ContactData {
            name: Name {
                first: "Bench".into(),
                last: format!("New{i}"),
                ..Default::default()
            },
            emails: vec![EmailValue {
                id: Uuid::new_v4(),
                tag: "work".into(),
                email: Email::parse(&format!(
                    "new.{:x}.{}.{i}@bench.example",
                    self.nonce, self.id
                ))
                .unwrap(),
                status: EmailStatus::Unspecified,
            }],
            phones: vec![PhoneValue {
                id: Uuid::new_v4(),
                tag: String::new(),
                phone: Phone::parse(
                    &format!("(646) {}-{}", line / 10_000, line % 10_000),
                    Region::default(),
                )
                .unwrap(),
            }],
            ..Default::default()
        }
    }

    fn merge_report(&self, i: u64) -> ContactData {
        ContactData {
            emails: vec![EmailValue {
                id: Uuid::new_v4(),
                tag: String::new(),
                email: self.target(i).email.clone(),
                status: EmailStatus::Unspecified,
            }],
            tags: vec![self.unique_tag("m", i)],
            ..Default::default()
        }
    }

    fn unique_tag(&self, prefix: &str, i: u64) -> String {
        format!("{prefix}{:x}-{}-{i}", self.nonce, self.id)
    }

    fn new_name(&self, i: u64) -> Name {
        Name {
            first: format!("Renamed{i}"),
            last: format!("W{}", self.id),
            ..Default::default()
        }
    }

    /// One RPC of the scenario.
    pub async fn rpc(&mut self, client: &mut Client, i: u64) -> Result<(), tonic::Status> {
        match self.scenario {
            Scenario::ReconcileNew | Scenario::ReconcileMerge => {
                let data = if self.scenario == Scenario::ReconcileNew {
                    self.new_contact(i)
                } else {
                    self.merge_report(i)
                };
                let request = pb::ReconcileRequest {
                    contact: Some(report_to_pb(data)),
                    default_region: String::new(),
                };
                client.reconcile(request).await?;
            }
            Scenario::Get => {
                let id = self.target(i).id.to_string();
                client
                    .get_contact(pb::GetContactRequest {
                        id,
                        read_mask: None,
                    })
                    .await?;
            }
            Scenario::AddValue => {
                let request = pb::AddValueRequest {
                    contact_id: self.target(i).id.to_string(),
                    value: Some(pb::add_value_request::Value::Tag(self.unique_tag("a", i))),
                    ..Default::default()
                };
                client.add_value(request).await?;
            }
            Scenario::Override => {
                let slot = i as usize % self.etags.len();
                let (id, etag) = &self.etags[slot];
                let name = self.new_name(i);
                let request = pb::OverrideValueRequest {
                    contact_id: id.to_string(),
                    etag: etag.clone(),
                    value: Some(pb::override_value_request::Value::Name(pb::Name {
                        first: name.first,
                        last: name.last,
                        ..Default::default()
                    })),
                    ..Default::default()
                };
                let response = client.override_value(request).await?.into_inner();
                self.etags[slot].1 = response.etag;
            }
            Scenario::Watch => unreachable!("the watch scenario writes as reconcile-new"),
            Scenario::List | Scenario::ListFirst | Scenario::ListDeep | Scenario::ListScan => {
                let (filter, after, size) = self.list_page(i);
                let page_token = if after == 0 {
                    String::new()
                } else if self.scenario == Scenario::ListScan {
                    self.scan.0.clone()
                } else {
                    self.deep_token.clone()
                };
                let request = pb::ListContactsRequest {
                    read_mask: Some(prost_types::FieldMask {
                        paths: LIST_MASK.map(String::from).to_vec(),
                    }),
                    email: filter.email.unwrap_or_default(),
                    page_size: size as i32,
                    page_token,
                    ..Default::default()
                };
                let page = client.list_contacts(request).await?.into_inner();
                if self.scenario == Scenario::ListScan {
                    // Continue with the token, or start over at the end of the site.
                    let more = !page.next_page_token.is_empty();
                    self.scan = (page.next_page_token, i64::from(more));
                }
            }
        }
        Ok(())
    }

    /// The filter, position and size of a list scenario's page.
    fn list_page(&self, i: u64) -> (ListFilter, i64, i64) {
        match self.scenario {
            Scenario::List => (
                ListFilter {
                    email: Some(self.target(i).email_key.clone()),
                    ..Default::default()
                },
                0,
                100,
            ),
            Scenario::ListDeep => (ListFilter::default(), self.deep_after, 100),
            // For the RPC side only "not at the start" matters: it follows tokens.
            Scenario::ListScan => (ListFilter::default(), self.scan.1, 500),
            _ => (ListFilter::default(), 0, 100),
        }
    }

    /// The same operation without gRPC: the server's storage functions (its
    /// statements, transactions and pipelining) on a dedicated connection
    /// (`conn`, taken when first needed and kept), or for point reads on
    /// shared ones as the server reads them, without authentication, wire
    /// parsing or the connection pool.
    pub async fn baseline(&mut self, conn: &mut Option<Exclusive>, i: u64) -> Result<(), Error> {
        let site = self.site;
        if self.scenario == Scenario::Get {
            let reader = self.readers.get().await?;
            let id = self.target(i).id;
            return sql::select_contact(&**reader, site, id, ReadMask::ALL)
                .await
                .map(drop);
        }
        let is_list = matches!(
            self.scenario,
            Scenario::List | Scenario::ListFirst | Scenario::ListDeep | Scenario::ListScan
        );
        if is_list {
            let (filter, after, size) = self.list_page(i);
            let mask = *LIST_MASK_PARSED;
            // The server asks for one more row than a page, to know whether another follows.
            let (rows, _) = if filter.is_point_read() {
                let reader = self.readers.get().await?;
                sql::list_contacts(&**reader, site, &filter, after, size + 1, mask).await?
            } else {
                let client = self.dedicated(conn).await?;
                sql::list_contacts(&**client, site, &filter, after, size + 1, mask).await?
            };
            if self.scenario == Scenario::ListScan {
                // Continue after this page, or start over at the end of the site.
                let more = rows.len() as i64 > size;
                self.scan.1 = if more { rows[size as usize - 1].1 } else { 0 };
            }
            return Ok(());
        }
        let app = self.app.clone();
        let tx = match Tx::start(self.dedicated(conn).await?).await {
            Ok(tx) => tx,
            Err(error) => {
                // Unsettled: a connection that failed its preparation is not reused.
                *conn = None;
                return Err(error);
            }
        };
        let result = match self.scenario {
            Scenario::ReconcileNew => contacts::reconcile(&tx, site, &app, self.new_contact(i))
                .await
                .map(drop),
            Scenario::ReconcileMerge => contacts::reconcile(&tx, site, &app, self.merge_report(i))
                .await
                .map(drop),
            Scenario::AddValue => {
                let value = NewValue::Tag(self.unique_tag("a", i));
                contacts::edit_contact(&tx, site, &app, self.target(i).id, None, None, |data| {
                    value.add_to(data).map(|outcome| (outcome, vec!["tags"]))
                })
                .await
                .map(drop)
            }
            Scenario::Override => {
                let slot = i as usize % self.etags.len();
                let (id, etag) = self.etags[slot].clone();
                let name = Replacement::Name(self.new_name(i));
                let edited =
                    contacts::edit_contact(&tx, site, &app, id, Some(&etag), None, |data| {
                        name.apply(data)
                            .map(|changed| ((), Vec::from_iter(changed)))
                    })
                    .await;
                edited.map(|(contact, ())| self.etags[slot].1 = contact.etag())
            }
            Scenario::Get
            | Scenario::List
            | Scenario::ListFirst
            | Scenario::ListDeep
            | Scenario::ListScan => {
                unreachable!("answered above")
            }
            Scenario::Watch => unreachable!("the watch scenario writes as reconcile-new"),
        };
        if result.is_err() {
            // Closed if the transaction was left open, else back to the pool.
            *conn = None;
        }
        result
    }

    /// The worker's dedicated connection, taken from the pool the first time.
    async fn dedicated<'c>(&self, conn: &'c mut Option<Exclusive>) -> Result<&'c Exclusive, Error> {
        if conn.is_none() {
            *conn = Some(Exclusive::new(self.pool.get().await?));
        }
        Ok(conn.as_ref().expect("set just above"))
    }
}

/// A report as an app would send it.
pub fn report_to_pb(data: ContactData) -> pb::Contact {
    pb::Contact {
        name: Some(pb::Name {
            first: data.name.first,
            last: data.name.last,
            ..Default::default()
        }),
        emails: data
            .emails
            .into_iter()
            .map(|e| pb::Email {
                email: e.email.as_str().into(),
                tag: e.tag,
                ..Default::default()
            })
            .collect(),
        phones: data
            .phones
            .into_iter()
            .map(|p| pb::Phone {
                phone: p.phone.as_str().into(),
                tag: p.tag,
                ..Default::default()
            })
            .collect(),
        tags: data.tags,
        ..Default::default()
    }
}
