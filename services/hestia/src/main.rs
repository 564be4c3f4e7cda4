// glibc malloc was a quarter of the push path's CPU (perf); mimalloc is several times cheaper.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "hestia",
    version,
    about = "Hestia: a self-hostable, Prometheus-compatible metrics service"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every role in one process (gateway, distributor, ingester, querier, compactor and one
    /// control-plane voter).
    All(hestia::AllArgs),
    /// Print the effective configuration (file + flags + defaults) as TOML.
    Config(hestia::AllArgs),
    /// Manage accounts, users, access keys, policies and workspace tokens (admin API, SigV4).
    Admin(hestia::admin::AdminArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    hestia_telemetry::disable_transparent_huge_pages();
    match Cli::parse().command {
        Command::All(args) => {
            let cfg = args.load()?;
            let _telemetry = hestia_telemetry::init_tracing(&cfg.telemetry);
            let running = hestia::AllInOne::start(cfg).await?;
            println!("Hestia listening on http://{}", running.addr);
            hestia_telemetry::shutdown_signal().await;
            running.shutdown().await
        }
        Command::Config(args) => {
            let cfg = args.load()?;
            print!("{}", hestia_config::to_toml(&cfg)?);
            Ok(())
        }
        Command::Admin(args) => {
            if let Err(e) = hestia::admin::run(args).await {
                eprintln!("error: {e:#}");
                std::process::exit(1);
            }
            Ok(())
        }
    }
}
