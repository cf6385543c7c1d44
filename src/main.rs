use clap::Parser;
use contactsd::config::{Cli, Command, KeysCommand, Settings};
use contactsd::storage::{DbSettings, Store};
use contactsd::{Application, auth};

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = cli.serve.worker_threads {
        runtime.worker_threads(threads);
    }
    let runtime = match runtime.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("contactsd: starting the runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("contactsd: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    match &cli.command {
        None | Some(Command::Serve) => {
            let settings = Settings::from_cli(&cli)?;
            let app = Application::build(settings).await?;
            app.run_until_stopped(shutdown_signal()).await?;
            tracing::info!("stopped");
        }
        Some(Command::Keys {
            command: KeysCommand::Create { site, app, scopes },
        }) => {
            let (read, write) = auth::Scope::parse_list(scopes)?;
            let db = DbSettings {
                pool_size: 1,
                read_connections: 1,
                ..Default::default()
            };
            let store = Store::connect(&cli.database_url, &db).await?;
            let key = auth::create_key(&store, site, app, read, write).await?;
            eprintln!("created a key for app {app:?} on site {site:?}; it is shown only once:");
            println!("{key}");
        }
    }
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = interrupt => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("shutting down: finishing calls in flight");
}
