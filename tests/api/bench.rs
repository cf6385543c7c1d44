//! Runs `contactsd-bench` briefly against a real server, so it cannot rot.

use std::process::Output;

use crate::helpers::*;

/// Runs the bench against `app` with `key` and `args`.
async fn bench(app: &TestApp, key: &str, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_contactsd-bench"))
        .args(args)
        .env("DATABASE_URL", app.database_url())
        .env("CONTACTS_ADDR", format!("http://{}", app.address))
        .env("CONTACTS_KEY", key)
        .output()
        .await
        .unwrap()
}

/// The bench's `--json` reports, one per scenario.
fn reports(output: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// A setting as the session `db` sees it, in `SHOW`'s form ("1s").
async fn setting(db: &tokio_postgres::Client, name: &str) -> String {
    db.query_one("SELECT current_setting($1)", &[&name])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bench_seeds_and_measures_every_scenario_against_its_baseline() {
    let app = spawn_app().await;
    let key = app.key("bench", "read,write").await;

    let output = bench(
        &app,
        &key,
        &[
            "--seed",
            "300",
            "--duration",
            "0.6",
            "--warmup",
            "0.2",
            "--rounds",
            "1",
            "--concurrency",
            "4",
            "--watchers",
            "20",
            "--watch-rate",
            "50",
            "--json",
        ],
    )
    .await;

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the bench failed:\n{stderr}");
    assert!(stderr.contains("seeded 300 contacts"), "{stderr}");
    let db = app.db().await;
    let autovacuum = setting(&db, "autovacuum").await;
    assert_eq!(
        stderr.contains("VACUUM ANALYZE runs before each scenario"),
        autovacuum == "off",
        "the bench vacuums exactly when the cluster does not: {stderr}"
    );
    let synchronous_commit = setting(&db, "synchronous_commit").await;
    assert!(
        stderr.contains(&format!(
            "synchronous_commit {synchronous_commit}; one idle connection's round trip"
        )),
        "the table's head says what machine it ran on: {stderr}"
    );
    let reports = reports(&output);
    let names: Vec<_> = reports
        .iter()
        .map(|r| r["scenario"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "reconcile-new",
            "reconcile-merge",
            "get",
            "add-value",
            "override",
            "list",
            "list-first",
            "list-deep",
            "list-scan",
            "watch"
        ]
    );
    for report in &reports {
        for key in ["rpc_per_s", "baseline_per_s", "ratio", "p50_ms", "p99_ms"] {
            assert!(report[key].as_f64().unwrap() > 0.0, "{key} of {report}");
        }
        assert_eq!(report["rpc_errors"], 0, "{report}\n{stderr}");
        let machine = &report["machine"];
        assert!(machine["cpus"].as_u64().unwrap() >= 1, "{report}");
        assert_eq!(
            machine["synchronous_commit"], *synchronous_commit,
            "{report}"
        );
        assert!(
            machine["postgres"]
                .as_str()
                .unwrap()
                .starts_with(char::is_numeric),
            "{report}"
        );
        for key in ["db_round_trip_us", "db_commit_us"] {
            assert!(machine[key].as_f64().unwrap() > 0.0, "{key} of {report}");
        }
        if report["scenario"] == "watch" {
            assert_eq!(
                report["complete_watchers"], 20,
                "every watcher gets every change: {report}"
            );
        } else {
            let rounds = report["round_ratios"].as_array().unwrap();
            assert_eq!(rounds.len(), 1, "one ratio per round: {report}");
            assert!(rounds[0].as_f64().unwrap() > 0.0, "{report}");
            assert!(
                report["ratio_ci95"].is_null(),
                "one round gives no interval: {report}"
            );
        }
        assert_eq!(report["baseline_errors"], 0, "{report}\n{stderr}");
    }
}

/// The bench's default client is its own transport under the generated
/// client (see `transport.rs` in the bench); tonic's `Channel` stays
/// selectable, so both must carry unary calls, pages and streams.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bench_measures_through_tonics_channel_too() {
    let app = spawn_app().await;
    let key = app.key("bench", "read,write").await;

    let output = bench(
        &app,
        &key,
        &[
            "--client",
            "channel",
            "--seed",
            "100",
            "--scenario",
            "get,add-value,list-scan,watch",
            "--duration",
            "0.4",
            "--warmup",
            "0.1",
            "--rounds",
            "1",
            "--concurrency",
            "4",
            "--watchers",
            "10",
            "--watch-rate",
            "50",
            "--json",
        ],
    )
    .await;

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the bench failed:\n{stderr}");
    let reports = reports(&output);
    assert_eq!(reports.len(), 4, "{stderr}");
    for report in &reports {
        assert!(report["rpc_per_s"].as_f64().unwrap() > 0.0, "{report}");
        assert_eq!(report["rpc_errors"], 0, "{report}\n{stderr}");
    }
}

/// add-value and reconcile-merge add a tag per call to a few targets; a
/// contact holds at most 50, so a run that adds more than that per target
/// must make room between its phases instead of measuring errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bench_runs_past_the_tag_limit_without_errors() {
    let app = spawn_app().await;
    let key = app.key("bench", "read,write").await;
    let (targets, seconds) = (16, 2);
    let (seed, duration) = (targets.to_string(), seconds.to_string());

    let output = bench(
        &app,
        &key,
        &[
            "--seed",
            &seed,
            "--scenario",
            "reconcile-merge,add-value",
            "--duration",
            &duration,
            "--warmup",
            "0.1",
            "--rounds",
            "20",
            "--concurrency",
            "4",
            "--json",
        ],
    )
    .await;

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the bench failed:\n{stderr}");
    let reports = reports(&output);
    assert_eq!(reports.len(), 2, "{stderr}");
    for report in &reports {
        let per_s =
            report["rpc_per_s"].as_f64().unwrap() + report["baseline_per_s"].as_f64().unwrap();
        assert!(
            per_s * f64::from(seconds) / f64::from(targets) > 50.0,
            "the run must add more tags per target than a contact holds: {report}"
        );
        assert_eq!(report["rpc_errors"], 0, "{report}\n{stderr}");
        assert_eq!(report["baseline_errors"], 0, "{report}\n{stderr}");
    }
}

#[tokio::test]
async fn the_benchs_client_reports_the_status_the_server_answered() {
    let app = spawn_app().await;
    // Known to the database, so the bench starts; refused every write.
    let key = app.key("bench", "read").await;

    let output = bench(
        &app,
        &key,
        &[
            "--seed",
            "50",
            "--scenario",
            "add-value",
            "--duration",
            "0.2",
            "--warmup",
            "0",
            "--rounds",
            "1",
            "--concurrency",
            "2",
            "--json",
        ],
    )
    .await;

    let stderr = String::from_utf8_lossy(&output.stderr);
    let reports = reports(&output);
    assert!(
        reports[0]["rpc_errors"].as_u64().unwrap() > 0,
        "{reports:?}\n{stderr}"
    );
    assert!(
        stderr.contains("first error: PermissionDenied"),
        "the server's status, not a transport error: {stderr}"
    );
}

#[tokio::test]
async fn the_bench_says_clearly_when_the_server_is_unreachable() {
    let app = spawn_app().await;
    let key = app.key("bench", "read,write").await;

    for client in ["h2", "channel"] {
        // The flag wins over the helper's CONTACTS_ADDR.
        let args = ["--client", client, "--addr", "http://127.0.0.1:1"];
        let output = bench(&app, &key, &args).await;

        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("cannot reach contactsd at http://127.0.0.1:1"),
            "{client}: {stderr}"
        );
    }
}

#[tokio::test]
async fn the_benchs_baseline_writes_on_sessions_set_up_as_the_servers() {
    let app = spawn_app().await;
    let config: tokio_postgres::Config = app.database_url().parse().unwrap();
    let pool = contactsd::storage::baseline_pool(config, 1).unwrap();
    let session = pool.get().await.unwrap();

    // What the server's pool sets (see `storage::pool::build`): the database
    // does this work for the server's writes, so the baseline's do it too.
    assert_eq!(
        setting(&session, "client_connection_check_interval").await,
        "1s"
    );
    assert_eq!(
        setting(&session, "idle_in_transaction_session_timeout").await,
        "10s"
    );
}
