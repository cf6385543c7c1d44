//! contactsd-bench: measures every RPC against its bare-SQL baseline — the
//! same statements sent straight to PostgreSQL — in one run, alternating RPC
//! and baseline rounds so both see the same machine. Ratios, not absolute
//! numbers, are what to compare across runs and machines.

mod machine;
mod scenarios;
mod seed;
mod transport;
mod watch;

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use contactsd::client::BearerAuth;
use contactsd::config::DEFAULT_DATABASE_URL;
use contactsd::domain::{Email, Limits, etag_of};
use contactsd::grpc::page_token;
use contactsd::pb::contacts_service_client::ContactsServiceClient;
use contactsd::storage::readers::Readers;
use contactsd::storage::sql::ListFilter;
use hdrhistogram::Histogram;
use scenarios::{Scenario, Target, Worker};
use tonic::service::interceptor::InterceptedService;
use transport::{ClientKind, Transport};
use uuid::Uuid;

pub type Client = ContactsServiceClient<InterceptedService<Transport, BearerAuth>>;

#[derive(Debug, Parser)]
#[command(
    name = "contactsd-bench",
    about = "Measures contactsd's RPCs against their bare-SQL baseline"
)]
struct Args {
    /// The running contactsd.
    #[arg(long, env = "CONTACTS_ADDR", default_value = "http://127.0.0.1:50051")]
    addr: String,
    /// An API key (read,write) of the bench site.
    #[arg(long, env = "CONTACTS_KEY", hide_env_values = true)]
    key: String,
    /// The database contactsd uses.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, hide_env_values = true)]
    database_url: String,
    /// Load this many contacts into the key's site first (binary COPY).
    #[arg(long)]
    seed: Option<u64>,
    /// Only seed; run no scenario.
    #[arg(long)]
    seed_only: bool,
    /// Scenarios to run, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    scenario: Vec<Scenario>,
    /// Measured seconds per scenario on each side (RPC and baseline).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Unmeasured seconds per scenario on each side before measuring.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// HTTP/2 connections the requests share (default: one per 4 in flight).
    #[arg(long)]
    connections: Option<usize>,
    /// The RPC side's client: the generated client over a bare h2
    /// connection, or over tonic's `Channel` (see the README).
    #[arg(long, value_enum, default_value_t = ClientKind::H2)]
    client: ClientKind,
    /// Connections the baseline's point reads share, as the server's
    /// `--db-read-connections` (keep the two equal).
    #[arg(long, default_value_t = 2)]
    read_connections: usize,
    /// Alternations of RPC and baseline per scenario; the duration is split among them.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Print one JSON object per scenario on stdout (the table goes to
    /// stderr), each with the machine it ran on under `machine`.
    #[arg(long)]
    json: bool,
    /// Watchers the watch scenario opens.
    #[arg(long, default_value_t = 1000)]
    watchers: usize,
    /// Changes per second the watch scenario writes while they watch.
    #[arg(long, default_value_t = 200.0)]
    watch_rate: f64,
    /// contactsd's process id, to report its peak resident memory per scenario.
    #[arg(long, env = "CONTACTS_SERVER_PID")]
    server_pid: Option<u32>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("contactsd-bench: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// What the phases share.
pub struct Fixture {
    site: i64,
    app: Arc<str>,
    channels: Vec<Transport>,
    client: ClientKind,
    auth: BearerAuth,
    pool: deadpool_postgres::Pool,
    /// The baseline's point reads, arranged as the server's.
    readers: Arc<Readers>,
    targets: Arc<Vec<Target>>,
    nonce: u32,
    deep_after: i64,
    /// The page token of the deep page, signed once.
    deep_token: String,
}

async fn run(args: Args) -> Result<(), String> {
    let concurrency = args.concurrency.max(1);
    let mut pg_config = tokio_postgres::Config::from_str(&args.database_url)
        .map_err(|e| format!("DATABASE_URL is not a PostgreSQL URL: {e}"))?;
    pg_config
        .application_name("contactsd-bench")
        .connect_timeout(Duration::from_secs(5));
    let (mut admin, connection) = pg_config
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| {
            format!(
                "cannot reach the database ({}): {e}",
                describe_db(&pg_config)
            )
        })?;
    tokio::spawn(connection);

    let key_hash = contactsd::auth::hash_key(&args.key);
    let row = admin
        .query_opt(
            "SELECT site_id, app FROM api_keys WHERE key_hash = $1",
            &[&&key_hash[..]],
        )
        .await
        .map_err(|e| format!("reading api_keys (is this contactsd's database?): {e}"))?
        .ok_or(
            "the key is not known in this database: create one with \
                `contactsd keys create --site bench --app bench --scopes read,write`",
        )?;
    let (site, app): (i64, String) = (row.get(0), row.get(1));

    let connections = args
        .connections
        .unwrap_or(concurrency.div_ceil(4))
        .clamp(1, concurrency);
    let channels = connect_channels(&args.addr, connections, args.client).await?;
    let auth = BearerAuth::new(&args.key)?;

    if let Some(n) = args.seed {
        seed::seed(&mut admin, site, n).await?;
    }
    if args.seed_only {
        return Ok(());
    }
    let targets = sample_targets(&admin, site).await?;
    if targets.len() < concurrency {
        return Err(format!(
            "the site holds {} contacts with an email; seed at least {concurrency} (--seed N)",
            targets.len()
        ));
    }
    let readers = Readers::new(
        pg_config.clone(),
        args.read_connections,
        contactsd::storage::readers::DEFAULT_READ_TIMEOUT,
    )
    .map_err(|e| e.to_string())?
    .into();
    // Set up as the server's pooled sessions, as `Readers` are: what the
    // database does for those settings is not the RPC layer's cost.
    let pool =
        contactsd::storage::baseline_pool(pg_config, concurrency).map_err(|e| e.to_string())?;
    let secret: Vec<u8> = admin
        .query_one("SELECT secret FROM server_secret", &[])
        .await
        .map_err(|e| format!("reading the token secret: {e}"))?
        .get(0);
    let deep_after = deep_position(&admin, site).await?;
    // A deep page straight away: the listing's watch cursor is not what the
    // scenario measures, so the token carries none.
    let deep_page = page_token::Page {
        after_seq: deep_after,
        watch_cursor: String::new(),
    };
    let no_filter = page_token::fingerprint(&ListFilter::default());
    let deep_token = page_token::encode(&secret, site, no_filter, &deep_page);
    let fixture = Fixture {
        site,
        app: app.into(),
        channels,
        client: args.client,
        auth,
        pool,
        readers,
        targets: Arc::new(targets),
        nonce: rand::random(),
        deep_after,
        deep_token,
    };

    let scenarios = if args.scenario.is_empty() {
        Scenario::value_variants().to_vec()
    } else {
        args.scenario.clone()
    };
    eprintln!(
        "{} contacts targeted, concurrency {concurrency}, {:.0} s per side in {} rounds after {:.0} s warm-up",
        fixture.targets.len(),
        args.duration,
        args.rounds,
        args.warmup
    );
    let vacuum = autovacuum_is_off(&admin).await?;
    if vacuum {
        eprintln!(
            "autovacuum is off on this cluster: VACUUM ANALYZE runs before each scenario, \
             so none inherits the dead rows and stale statistics of the ones before it"
        );
    }
    // Probed before any load, and after the vacuum notice so the table's
    // head stays together.
    let machine = machine::Machine::probe(&admin).await?;
    eprintln!("{}", machine.line());
    let print_json = |mut report: serde_json::Value| {
        if args.json {
            report["machine"] = machine.json();
            println!("{report}");
        }
    };
    eprintln!("{}", Report::HEADER);
    for scenario in scenarios {
        if scenario.grows_contacts() {
            trim_tags(&admin, &fixture, KEPT_TAGS).await?;
        }
        if vacuum {
            admin
                .batch_execute("VACUUM ANALYZE")
                .await
                .map_err(|e| format!("vacuuming before {}: {e}", scenario.name()))?;
        }
        if scenario == Scenario::Watch {
            let (row, json) = measure_watch(&args, &fixture, &admin, concurrency).await?;
            eprintln!("{row}");
            print_json(json);
            continue;
        }
        let report = measure(&args, &fixture, &admin, scenario, concurrency).await?;
        eprintln!("{}", report.row());
        print_json(report.json());
    }
    Ok(())
}

fn describe_db(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}/{}", config.get_dbname().unwrap_or("?"))
}

async fn connect_channels(
    addr: &str,
    connections: usize,
    kind: ClientKind,
) -> Result<Vec<Transport>, String> {
    let uri: http::Uri = addr.parse().map_err(|e| format!("--addr {addr:?}: {e}"))?;
    let mut channels = Vec::new();
    for _ in 0..connections {
        let channel = Transport::connect(&uri, kind).await.map_err(|e| {
            format!("cannot reach contactsd at {addr}: {e} (is it running? see --addr)")
        })?;
        channels.push(channel);
    }
    let mut health = tonic_health::pb::health_client::HealthClient::new(channels[0].clone());
    health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map_err(|e| format!("contactsd at {addr} is not healthy: {e}"))?;
    Ok(channels)
}

/// Up to 20,000 random contacts of the site, with an email each.
async fn sample_targets(admin: &tokio_postgres::Client, site: i64) -> Result<Vec<Target>, String> {
    let rows = admin
        .query(
            "SELECT id, emails->0->>'email' FROM contacts \
             WHERE site_id = $1 AND jsonb_array_length(emails) > 0 ORDER BY random() LIMIT 20000",
            &[&site],
        )
        .await
        .map_err(|e| format!("sampling contacts: {e}"))?;
    rows.iter()
        .map(|r| {
            let email = Email::parse(r.get(1)).map_err(|e| format!("a seeded email: {e}"))?;
            Ok(Target {
                id: r.get(0),
                email_key: email.key(),
                email,
            })
        })
        .collect()
}

/// The seq after which page 5,000 of 100 starts (or the middle of a smaller site).
async fn deep_position(admin: &tokio_postgres::Client, site: i64) -> Result<i64, String> {
    let count: i64 = admin
        .query_one("SELECT count(*) FROM contacts WHERE site_id = $1", &[&site])
        .await
        .map_err(|e| format!("counting contacts: {e}"))?
        .get(0);
    let offset = (count / 2).min(4_999 * 100);
    let row = admin
        .query_opt(
            "SELECT seq FROM contacts WHERE site_id = $1 ORDER BY seq OFFSET $2 LIMIT 1",
            &[&site, &offset],
        )
        .await
        .map_err(|e| format!("finding the deep page: {e}"))?;
    eprintln!("{count} contacts in the site; list-deep reads the page after position {offset}");
    Ok(row.map_or(0, |r| r.get(0)))
}

/// Whether the cluster leaves dead rows and statistics alone (CI's does, so
/// that tests repeat). Without a vacuum, reconcile-new alone can grow a 20k
/// database tenfold in one run, and every later scenario would measure that.
async fn autovacuum_is_off(admin: &tokio_postgres::Client) -> Result<bool, String> {
    let setting: String = admin
        .query_one("SHOW autovacuum", &[])
        .await
        .map_err(|e| format!("reading the autovacuum setting: {e}"))?
        .get(0);
    Ok(setting == "off")
}

/// Tags a trimmed target keeps.
const KEPT_TAGS: i32 = 3;

/// Cuts the targets holding more than `above` tags back to `KEPT_TAGS`, so
/// that the scenarios that add a tag per call stay under the limit of tags
/// per contact (bench fixture upkeep).
async fn trim_tags(
    admin: &tokio_postgres::Client,
    fixture: &Fixture,
    above: i32,
) -> Result<(), String> {
    let ids: Vec<Uuid> = fixture.targets.iter().map(|t| t.id).collect();
    admin
        .execute(
            "UPDATE contacts SET tags = tags[1:$4] WHERE site_id = $1 AND id = ANY($2) AND cardinality(tags) > $3",
            &[&fixture.site, &ids, &above, &KEPT_TAGS],
        )
        .await
        .map(drop)
        .map_err(|e| format!("trimming tags: {e}"))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Rpc,
    Baseline,
}

/// The outcome of one side of a scenario.
struct Measured {
    ops: u64,
    errors: u64,
    seconds: f64,
    latency: Histogram<u64>,
    first_error: Option<String>,
}

impl Measured {
    fn new() -> Self {
        Self {
            ops: 0,
            errors: 0,
            seconds: 0.0,
            // 1 µs to 60 s, 3 significant digits.
            latency: Histogram::new_with_bounds(1, 60_000_000, 3).unwrap(),
            first_error: None,
        }
    }

    fn per_second(&self) -> f64 {
        self.ops as f64 / self.seconds.max(1e-9)
    }

    fn ms(&self, quantile: f64) -> f64 {
        self.latency.value_at_quantile(quantile) as f64 / 1000.0
    }

    fn absorb(&mut self, other: Measured) {
        self.ops += other.ops;
        self.errors += other.errors;
        self.latency.add(&other.latency).unwrap();
        self.first_error = self.first_error.take().or(other.first_error);
    }
}

async fn measure(
    args: &Args,
    fixture: &Fixture,
    admin: &tokio_postgres::Client,
    scenario: Scenario,
    concurrency: usize,
) -> Result<Report, String> {
    let rss = RssSampler::start(args.server_pid);
    let phase = Duration::from_secs_f64(args.duration / args.rounds.max(1) as f64);
    let warmup = Duration::from_secs_f64(args.warmup);
    let counter = Arc::new(AtomicU64::new(0));
    let (mut rpc, mut baseline) = (Measured::new(), Measured::new());
    let mut round_ratios = Vec::new();
    // The fastest phase so far, from which `make_room` judges the next.
    let mut adds_per_s: f64 = 0.0;
    // Every phase, warm-up or measured, first makes room for itself.
    let mut phase_of = async |side, duration| {
        make_room(admin, fixture, scenario, adds_per_s, duration).await?;
        let measured = run_phase(
            fixture,
            admin,
            scenario,
            side,
            concurrency,
            duration,
            &counter,
        )
        .await?;
        adds_per_s = adds_per_s.max(measured.per_second());
        Ok::<_, String>(measured)
    };
    for side in [Side::Rpc, Side::Baseline] {
        if !warmup.is_zero() {
            phase_of(side, warmup).await?;
        }
    }
    for round in 0..args.rounds.max(1) {
        // Alternate which side goes first, so neither always follows the other.
        let order = if round % 2 == 0 {
            [Side::Rpc, Side::Baseline]
        } else {
            [Side::Baseline, Side::Rpc]
        };
        let (mut rpc_rate, mut baseline_rate) = (0.0, 0.0);
        for side in order {
            let measured = phase_of(side, phase).await?;
            let (total, rate) = if side == Side::Rpc {
                (&mut rpc, &mut rpc_rate)
            } else {
                (&mut baseline, &mut baseline_rate)
            };
            *rate = measured.per_second();
            total.seconds += measured.seconds;
            total.absorb(measured);
        }
        round_ratios.push(ratio(rpc_rate, baseline_rate));
    }
    Ok(Report {
        scenario,
        rpc,
        baseline,
        round_ratios,
        rss_mib: rss.stop(),
    })
}

/// Before a phase of a scenario that adds a tag per call, trims the targets
/// that could reach the limit during it. The 20 s runs of the README add ~12
/// tags to a target in all and trim none; longer runs, or fewer targets, would
/// otherwise fill the busiest targets and measure errors.
async fn make_room(
    admin: &tokio_postgres::Client,
    fixture: &Fixture,
    scenario: Scenario,
    adds_per_s: f64,
    phase: Duration,
) -> Result<(), String> {
    if !scenario.grows_contacts() || adds_per_s == 0.0 {
        return Ok(());
    }
    // Calls fall on the targets about as a Poisson draw: leave room for the
    // mean and four standard deviations, at a rate half again the fastest yet.
    let mean = adds_per_s * phase.as_secs_f64() / fixture.targets.len() as f64;
    let room = (1.5 * mean + 4.0 * mean.sqrt() + 1.0).ceil() as i32;
    let limit = Limits::VALUES_PER_ARRAY as i32;
    trim_tags(admin, fixture, (limit - room).max(KEPT_TAGS)).await
}

async fn run_phase(
    fixture: &Fixture,
    admin: &tokio_postgres::Client,
    scenario: Scenario,
    side: Side,
    concurrency: usize,
    duration: Duration,
    counter: &Arc<AtomicU64>,
) -> Result<Measured, String> {
    let etags = if scenario == Scenario::Override {
        current_etags(admin, fixture).await?
    } else {
        Vec::new()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for id in 0..concurrency {
        let etags = etags
            .iter()
            .skip(id)
            .step_by(concurrency)
            .cloned()
            .collect();
        let mut worker = Worker::new(fixture, scenario, id, concurrency, etags);
        let channel = fixture.channels[id % fixture.channels.len()].clone();
        let mut client = ContactsServiceClient::with_interceptor(channel, fixture.auth.clone());
        let (stop, counter) = (stop.clone(), counter.clone());
        tasks.push(tokio::spawn(async move {
            let mut measured = Measured::new();
            let mut conn = None;
            while !stop.load(Ordering::Relaxed) {
                let i = counter.fetch_add(1, Ordering::Relaxed);
                let started = Instant::now();
                let result = match side {
                    Side::Rpc => worker
                        .rpc(&mut client, i)
                        .await
                        .map_err(|s| format!("{:?}: {}", s.code(), s.message())),
                    Side::Baseline => worker
                        .baseline(&mut conn, i)
                        .await
                        .map_err(|e| e.to_string()),
                };
                let micros = started.elapsed().as_micros() as u64;
                match result {
                    Ok(()) => {
                        measured.ops += 1;
                        measured.latency.saturating_record(micros.max(1));
                    }
                    Err(error) => {
                        measured.errors += 1;
                        measured.first_error.get_or_insert(error);
                    }
                }
            }
            Ok::<_, String>(measured)
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = Measured::new();
    for task in tasks {
        total.absorb(task.await.map_err(|e| e.to_string())??);
    }
    total.seconds = started.elapsed().as_secs_f64();
    Ok(total)
}

impl Worker {
    pub fn new(
        fixture: &Fixture,
        scenario: Scenario,
        id: usize,
        workers: usize,
        etags: Vec<(Uuid, String)>,
    ) -> Self {
        Worker {
            scenario,
            site: fixture.site,
            app: fixture.app.clone(),
            targets: fixture.targets.clone(),
            id,
            workers,
            nonce: fixture.nonce,
            etags,
            deep_after: fixture.deep_after,
            deep_token: fixture.deep_token.clone(),
            pool: fixture.pool.clone(),
            scan: (String::new(), 0),
            readers: fixture.readers.clone(),
        }
    }
}

/// The watch scenario: reconcile-new without watchers, then with them
/// attached, and delivery while writers keep a steady rate.
async fn measure_watch(
    args: &Args,
    fixture: &Fixture,
    admin: &tokio_postgres::Client,
    concurrency: usize,
) -> Result<(String, serde_json::Value), String> {
    let rss = RssSampler::start(args.server_pid);
    let phase = Duration::from_secs_f64(args.duration);
    let counter = Arc::new(AtomicU64::new(0));
    // Closed-loop reconcile-new: once alone, once with the watchers attached.
    let writes = || {
        run_phase(
            fixture,
            admin,
            Scenario::ReconcileNew,
            Side::Rpc,
            concurrency,
            phase,
            &counter,
        )
    };
    let without = writes().await?;
    let outcome =
        watch::deliver(&args.addr, fixture, args.watchers, args.watch_rate, phase).await?;
    let with = writes().await?;
    for stream in &outcome.streams {
        stream.abort();
    }
    let rss = rss.stop();
    let ratio = ratio(with.per_second(), without.per_second());
    let ms = |q: f64| outcome.latency.value_at_quantile(q) as f64 / 1000.0;
    let mut row = format!(
        "{:<15} {:>7.0} (reconcile-new with {} watchers) | {:>6.0} (without) | {:>5.2} {:>7} {:>8}\n  \
         delivery: {}/{} watchers got all {} changes written at {}/s; latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        "watch",
        with.per_second(),
        outcome.watchers,
        without.per_second(),
        ratio,
        with.errors + without.errors,
        rss.map_or("-".into(), |m| format!("{m:.0}")),
        outcome.complete,
        outcome.watchers,
        outcome.changes,
        args.watch_rate,
        ms(0.5),
        ms(0.99),
        outcome.latency.max() as f64 / 1000.0,
    );
    for error in [&with.first_error, &without.first_error]
        .into_iter()
        .flatten()
    {
        row.push_str(&format!("\n  first error: {error}"));
    }
    let json = serde_json::json!({
        "scenario": "watch",
        "rpc_per_s": with.per_second(),
        "baseline_per_s": without.per_second(),
        "ratio": ratio,
        "p50_ms": ms(0.5),
        "p99_ms": ms(0.99),
        "p999_ms": ms(0.999),
        "watchers": outcome.watchers,
        "complete_watchers": outcome.complete,
        "changes": outcome.changes,
        "rpc_errors": with.errors,
        "baseline_errors": without.errors,
        "server_rss_mib": rss,
    });
    Ok((row, json))
}

/// The current etags of the override targets.
async fn current_etags(
    admin: &tokio_postgres::Client,
    fixture: &Fixture,
) -> Result<Vec<(Uuid, String)>, String> {
    let ids: Vec<Uuid> = fixture.targets.iter().map(|t| t.id).collect();
    let rows = admin
        .query(
            "SELECT id, version FROM contacts WHERE site_id = $1 AND id = ANY($2)",
            &[&fixture.site, &ids],
        )
        .await
        .map_err(|e| format!("reading etags: {e}"))?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), etag_of(r.get(0), r.get(1))))
        .collect())
}

/// Samples a process's resident memory while a scenario runs.
struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
}

impl RssSampler {
    fn start(pid: Option<u32>) -> Option<Self> {
        let pid = pid?;
        let (stop, peak) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
        );
        let (s, p) = (stop.clone(), peak.clone());
        tokio::spawn(async move {
            while !s.load(Ordering::Relaxed) {
                if let Some(kib) = std::fs::read_to_string(format!("/proc/{pid}/status"))
                    .ok()
                    .and_then(|status| {
                        status
                            .lines()
                            .find(|l| l.starts_with("VmRSS:"))
                            .map(str::to_owned)
                    })
                    .and_then(|line| {
                        line.split_whitespace()
                            .nth(1)
                            .and_then(|v| v.parse::<u64>().ok())
                    })
                {
                    p.fetch_max(kib, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Some(Self { stop, peak })
    }

    fn stop(this: Option<Self>) -> Option<f64> {
        let this = this?;
        this.stop.store(true, Ordering::Relaxed);
        Some(this.peak.load(Ordering::Relaxed) as f64 / 1024.0)
    }
}

trait StopRss {
    fn stop(self) -> Option<f64>;
}

impl StopRss for Option<RssSampler> {
    fn stop(self) -> Option<f64> {
        RssSampler::stop(self)
    }
}

/// An RPC rate over its baseline rate, kept finite (JSON has no NaN or infinity)
/// when a side made no calls.
fn ratio(rpc_per_s: f64, baseline_per_s: f64) -> f64 {
    rpc_per_s / baseline_per_s.max(1e-9)
}

/// A 95% confidence interval for a scenario's ratio, taking each round's
/// ratio as one paired sample (Student's t; needs two rounds or more). Whether
/// a run settles a target is then read off the interval, not off one figure.
/// Rounds of one run share the machine's slower drift, so runs on different
/// days can still land outside each other's interval.
fn ratio_interval(round_ratios: &[f64]) -> Option<(f64, f64)> {
    let n = round_ratios.len();
    if n < 2 {
        return None;
    }
    let mean = round_ratios.iter().sum::<f64>() / n as f64;
    let variance = round_ratios.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let half = t95(n - 1) * (variance / n as f64).sqrt();
    Some((mean - half, mean + half))
}

/// The two-sided 95% quantile of Student's t with `df` (at least 1) degrees
/// of freedom; past 30 the normal quantile is close enough.
fn t95(df: usize) -> f64 {
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    T.get(df.saturating_sub(1)).copied().unwrap_or(1.96)
}

struct Report {
    scenario: Scenario,
    rpc: Measured,
    baseline: Measured,
    /// Each round's RPC rate over the baseline rate of the same round. Their
    /// spread shows how far one run's ratio can be trusted on a noisy machine.
    round_ratios: Vec<f64>,
    rss_mib: Option<f64>,
}

impl Report {
    const HEADER: &str = "scenario          rpc/s   p50ms   p99ms  p999ms |  sql/s   p50ms   p99ms  p999ms | ratio      ci95    rounds    errors  rss_MiB";

    fn ratio(&self) -> f64 {
        ratio(self.rpc.per_second(), self.baseline.per_second())
    }

    fn row(&self) -> String {
        let (r, b) = (&self.rpc, &self.baseline);
        let mut row = format!(
            "{:<15} {:>7.0} {:>7.2} {:>7.2} {:>7.2} | {:>6.0} {:>7.2} {:>7.2} {:>7.2} | {:>5.2} {:>9} {:>9} {:>7} {:>8}",
            self.scenario.name(),
            r.per_second(),
            r.ms(0.5),
            r.ms(0.99),
            r.ms(0.999),
            b.per_second(),
            b.ms(0.5),
            b.ms(0.99),
            b.ms(0.999),
            self.ratio(),
            ratio_interval(&self.round_ratios)
                .map_or("-".into(), |(low, high)| format!("{low:.2}-{high:.2}")),
            self.round_range(),
            r.errors + b.errors,
            self.rss_mib.map_or("-".into(), |m| format!("{m:.0}")),
        );
        for error in [&r.first_error, &b.first_error].into_iter().flatten() {
            row.push_str(&format!("\n  first error: {error}"));
        }
        row
    }

    /// The lowest and highest round ratio, as "0.41-0.68".
    fn round_range(&self) -> String {
        let low = self
            .round_ratios
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min);
        let high = self.round_ratios.iter().copied().fold(0.0, f64::max);
        format!("{low:.2}-{high:.2}")
    }

    fn json(&self) -> serde_json::Value {
        let (r, b) = (&self.rpc, &self.baseline);
        serde_json::json!({
            "scenario": self.scenario.name(),
            "rpc_per_s": r.per_second(),
            "baseline_per_s": b.per_second(),
            "ratio": self.ratio(),
            "round_ratios": self.round_ratios,
            "ratio_ci95": ratio_interval(&self.round_ratios).map(|(low, high)| [low, high]),
            "p50_ms": r.ms(0.5),
            "p99_ms": r.ms(0.99),
            "p999_ms": r.ms(0.999),
            "baseline_p50_ms": b.ms(0.5),
            "baseline_p99_ms": b.ms(0.99),
            "baseline_p999_ms": b.ms(0.999),
            "rpc_errors": r.errors,
            "baseline_errors": b.errors,
            "server_rss_mib": self.rss_mib,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_round_gives_no_interval() {
        assert_eq!(ratio_interval(&[0.7]), None);
        assert_eq!(ratio_interval(&[]), None);
    }

    #[test]
    fn the_interval_is_the_t_interval_of_the_round_ratios() {
        // Mean 0.75; squared deviations sum to 0.005 over n - 1 = 3; t(3) = 3.182.
        let (low, high) = ratio_interval(&[0.7, 0.75, 0.8, 0.75]).unwrap();
        let sd = (0.005_f64 / 3.0).sqrt();
        let half = 3.182 * sd / 2.0;
        assert!((low - (0.75 - half)).abs() < 1e-9, "{low}");
        assert!((high - (0.75 + half)).abs() < 1e-9, "{high}");
    }

    #[test]
    fn identical_rounds_give_a_point_interval() {
        let (low, high) = ratio_interval(&[0.8; 10]).unwrap();
        assert!((low - 0.8).abs() < 1e-12 && (high - 0.8).abs() < 1e-12);
    }

    #[test]
    fn many_rounds_use_the_normal_quantile() {
        assert_eq!(t95(1), 12.706);
        assert_eq!(t95(30), 2.042);
        assert_eq!(t95(31), 1.96);
    }
}
