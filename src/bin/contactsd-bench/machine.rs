//! What the machine under a run's figures is like. Ratios move with the
//! machine (README, "Performance"): the same binaries gave the
//! writes ~0.05 apart on two days, and a slower machine's day shifted every
//! ratio. Each run says what it ran on, so that figures from two machines
//! are not read as a change in the code.

use std::time::{Duration, Instant};

/// How long each latency probe runs (it takes at least `MIN_SAMPLES`).
const PROBE: Duration = Duration::from_millis(300);
const MIN_SAMPLES: usize = 10;

pub struct Machine {
    cpus: usize,
    /// `model name` from /proc/cpuinfo, where there is one.
    cpu: Option<String>,
    postgres: String,
    synchronous_commit: String,
    /// One idle connection's median `SELECT 1`. On an idle machine this is
    /// mostly waking idle CPUs (the backend's, then ours), which virtual
    /// machines differ in most; under load the baselines' rates say more.
    round_trip_us: f64,
    /// One idle connection's median commit of a transaction that took an
    /// xid: the round trip plus the WAL flush, when `synchronous_commit` is
    /// on.
    commit_us: f64,
}

impl Machine {
    /// Reads the machine, and times the database from one idle connection:
    /// run it before any load.
    pub async fn probe(db: &tokio_postgres::Client) -> Result<Self, String> {
        let fail = |e: tokio_postgres::Error| format!("probing the database: {e}");
        let settings = db
            .query_one(
                "SELECT current_setting('server_version'), current_setting('synchronous_commit')",
                &[],
            )
            .await
            .map_err(fail)?;
        let version: String = settings.get(0);
        Ok(Self {
            cpus: std::thread::available_parallelism().map_or(1, usize::from),
            cpu: cpu_model(),
            // "15.20 (Debian 15.20-0+deb12u1)": the version is the first word.
            postgres: version.split_whitespace().next().unwrap_or("?").into(),
            synchronous_commit: settings.get(1),
            round_trip_us: median_us(db, "SELECT 1").await.map_err(fail)?,
            commit_us: median_us(db, "SELECT txid_current()").await.map_err(fail)?,
        })
    }

    /// One line for the table's head.
    pub fn line(&self) -> String {
        format!(
            "machine: {} CPUs{}, PostgreSQL {}, synchronous_commit {}; \
             one idle connection's round trip {:.0} µs, commit {:.0} µs",
            self.cpus,
            self.cpu
                .as_ref()
                .map_or(String::new(), |model| format!(" ({model})")),
            self.postgres,
            self.synchronous_commit,
            self.round_trip_us,
            self.commit_us,
        )
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "cpus": self.cpus,
            "cpu": self.cpu,
            "postgres": self.postgres,
            "synchronous_commit": self.synchronous_commit,
            "db_round_trip_us": self.round_trip_us,
            "db_commit_us": self.commit_us,
        })
    }
}

/// The median latency of `sql` on `db`, one statement at a time.
async fn median_us(db: &tokio_postgres::Client, sql: &str) -> Result<f64, tokio_postgres::Error> {
    let statement = db.prepare(sql).await?;
    let mut samples = Vec::new();
    let start = Instant::now();
    while samples.len() < MIN_SAMPLES || start.elapsed() < PROBE {
        let sent = Instant::now();
        db.execute(&statement, &[]).await?;
        samples.push(sent.elapsed());
    }
    samples.sort_unstable();
    Ok(samples[samples.len() / 2].as_secs_f64() * 1e6)
}

fn cpu_model() -> Option<String> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name")?.split_once(':'))
        .map(|(_, model)| model.trim().to_owned())
        .filter(|model| !model.is_empty())
}
