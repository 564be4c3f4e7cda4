use clap::Parser;
use hestia_loadgen::{run, Args};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let result = async {
        let settings = Args::parse().into_settings()?;
        let summary = run(settings).await?;
        Ok::<_, hestia_loadgen::LoadgenError>(summary)
    }
    .await;
    match result {
        Ok(summary) => {
            println!("{}", summary.line(&Default::default()));
            match serde_json::to_string(&summary) {
                Ok(json) => println!("{json}"),
                Err(e) => eprintln!("hestia-loadgen: encoding the summary: {e}"),
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("hestia-loadgen: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
