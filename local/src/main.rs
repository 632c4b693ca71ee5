//! The `lambent` binary: see the library for what each command does.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    lambent_local::main().await
}
