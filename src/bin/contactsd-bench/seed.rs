//! Loads realistic contacts straight into PostgreSQL with binary COPY.
//!
//! Seeding is a bench fixture, not a stream of changes: it writes contacts and
//! their keys but no change records, so a watcher does not see seeded contacts.

use std::io::IsTerminal;
use std::time::Instant;

use chrono::Utc;
use contactsd::domain::{
    AddressValue, ContactData, Email, EmailStatus, EmailValue, Name, Phone, PhoneValue, Region,
};
use futures::pin_mut;
use rand::{Rng, SeedableRng, rngs::SmallRng};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{Json, Type};
use uuid::Uuid;

const FIRST: &[&str] = &[
    "Dana", "Noa", "Avi", "Maya", "Lior", "Tamar", "Yossi", "Eitan", "Shira", "Omer", "Alex",
    "Sam", "Jordan", "Taylor", "Morgan", "Riley", "Casey", "Jamie", "Robin", "Chris",
];
const LAST: &[&str] = &[
    "Levi", "Cohen", "Mizrahi", "Peretz", "Biton", "Friedman", "Smith", "Johnson", "Garcia",
    "Brown", "Miller", "Davis", "Wilson", "Moore", "Clark", "Lewis", "Walker", "Young", "King",
    "Wright",
];
const DOMAINS: &[&str] = &[
    "example.com",
    "mail.example",
    "work.example",
    "shop.example",
];
const CITIES: &[&str] = &[
    "Haifa", "Tel Aviv", "Boston", "Austin", "Denver", "Seattle", "Chicago",
];
const AREA_CODES: &[u32] = &[212, 312, 415, 512, 617, 646, 206, 303];
const TAGS: &[&str] = &[
    "vip",
    "newsletter",
    "lead",
    "customer",
    "supplier",
    "partner",
];

/// Contact `i` of a seeding run: 1–3 emails, 0–2 phones in mixed formats, an
/// address and some tags. Emails and phones are unique within a run (`nonce`).
pub fn contact(nonce: u32, i: u64) -> ContactData {
    let mut rng = SmallRng::seed_from_u64(u64::from(nonce) << 32 ^ i);
    let first = FIRST[rng.random_range(0..FIRST.len())];
    let last = LAST[rng.random_range(0..LAST.len())];
    let emails = (0..rng.random_range(1..=3))
        .map(|n| EmailValue {
            id: Uuid::new_v4(),
            tag: ["work", "home", ""][n].into(),
            email: Email::parse(&format!(
                "{}.{}.{nonce:x}.{i}.{n}@{}",
                first.to_lowercase(),
                last.to_lowercase(),
                DOMAINS[n]
            ))
            .expect("generated emails are valid"),
            status: EmailStatus::Transactional,
        })
        .collect();
    // A unique 7-digit line per (run, contact, slot); the formats vary as people write them.
    let phones = (0..rng.random_range(0..=2u64))
        .map(|n| {
            let line = (u64::from(nonce) * 7_919 + i * 3 + n) % 9_000_000 + 1_000_000;
            let area = AREA_CODES[((i + n) % AREA_CODES.len() as u64) as usize];
            let text = match (i + n) % 3 {
                0 => format!("({area}) {}-{}", line / 10_000, line % 10_000),
                1 => format!("+1 {area} {} {}", line / 10_000, line % 10_000),
                _ => format!("{area}.{}.{}", line / 10_000, line % 10_000),
            };
            PhoneValue {
                id: Uuid::new_v4(),
                tag: "mobile".into(),
                phone: Phone::parse(&text, Region::default()).expect("generated phones are valid"),
            }
        })
        .collect();
    ContactData {
        name: Name {
            first: first.into(),
            last: last.into(),
            ..Default::default()
        },
        emails,
        phones,
        addresses: vec![AddressValue {
            id: Uuid::new_v4(),
            tag: "home".into(),
            address: format!("{} Main St", i % 999 + 1),
            neighborhood: String::new(),
            city: CITIES[(i % CITIES.len() as u64) as usize].into(),
            region: String::new(),
            country: "US".into(),
            postal_code: format!("{:05}", i % 99_999),
        }],
        tags: (0..rng.random_range(0..=2))
            .map(|n| TAGS[(i as usize + n) % TAGS.len()].into())
            .collect(),
        ..Default::default()
    }
}

/// Loads `n` contacts into `site` in batches, one transaction each.
pub async fn seed(client: &mut tokio_postgres::Client, site: i64, n: u64) -> Result<(), String> {
    const BATCH: u64 = 20_000;
    let nonce: u32 = rand::rng().random();
    let started = Instant::now();
    // Progress overwrites itself on a terminal; in a log it would run the
    // counts and the summary together on one line.
    let progress = std::io::stderr().is_terminal();
    let mut done = 0;
    while done < n {
        let batch = BATCH.min(n - done);
        let tx = client
            .transaction()
            .await
            .map_err(|e| format!("seeding: {e}"))?;
        copy_batch(&tx, site, nonce, done, batch)
            .await
            .map_err(|e| format!("seeding: {e}"))?;
        tx.commit().await.map_err(|e| format!("seeding: {e}"))?;
        done += batch;
        if progress {
            eprint!("\rseeded {done}/{n}");
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "{}seeded {n} contacts in {seconds:.1} s ({:.0} contacts/s)",
        if progress { "\r" } else { "" },
        n as f64 / seconds
    );
    client
        .batch_execute("ANALYZE contacts; ANALYZE contact_keys")
        .await
        .map_err(|e| e.to_string())
}

async fn copy_batch(
    tx: &tokio_postgres::Transaction<'_>,
    site: i64,
    nonce: u32,
    from: u64,
    count: u64,
) -> Result<(), tokio_postgres::Error> {
    let contacts: Vec<(Uuid, ContactData)> = (from..from + count)
        .map(|i| (Uuid::new_v4(), contact(nonce, i)))
        .collect();
    let now = Utc::now();

    let sink = tx
        .copy_in(
            "COPY contacts (site_id, id, version, name_first, name_last, emails, phones, addresses, tags, \
             create_time, update_time) FROM STDIN BINARY",
        )
        .await?;
    let types = [
        Type::INT8,
        Type::UUID,
        Type::INT8,
        Type::TEXT,
        Type::TEXT,
        Type::JSONB,
        Type::JSONB,
        Type::JSONB,
        Type::TEXT_ARRAY,
        Type::TIMESTAMPTZ,
        Type::TIMESTAMPTZ,
    ];
    let writer = BinaryCopyInWriter::new(sink, &types);
    pin_mut!(writer);
    for (id, data) in &contacts {
        writer
            .as_mut()
            .write(&[
                &site,
                id,
                &1i64,
                &data.name.first,
                &data.name.last,
                &Json(&data.emails),
                &Json(&data.phones),
                &Json(&data.addresses),
                &data.tags,
                &now,
                &now,
            ])
            .await?;
    }
    writer.finish().await?;

    let sink = tx
        .copy_in("COPY contact_keys (site_id, key, contact_id) FROM STDIN BINARY")
        .await?;
    let writer = BinaryCopyInWriter::new(sink, &[Type::INT8, Type::TEXT, Type::UUID]);
    pin_mut!(writer);
    for (id, data) in &contacts {
        for key in data.keys() {
            writer.as_mut().write(&[&site, &key, id]).await?;
        }
    }
    writer.finish().await?;
    Ok(())
}
