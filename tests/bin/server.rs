//! `lambent serve` without the CLI: configured by the environment only, stopped only by a signal (the
//! durability test sends SIGKILL).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = match lambent::Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("lambent-test-server: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match lambent_local::run(lambent_local::Command::Serve, config, std::future::pending()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("lambent-test-server: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}
