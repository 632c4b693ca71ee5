//! `cargo run -p lambent-site`: writes the whole site (every page, `static/`, `vendor/`, `favicon.ico`) into
//! `site/dist/`, for the deploy to upload to S3 (`aws s3 sync site/dist …`).

use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("dist");
    match lambent_site::build(&dist) {
        Ok(()) => {
            println!("site built into {}", dist.display());
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("build-site: {}: {err}", dist.display());
            ExitCode::FAILURE
        }
    }
}
