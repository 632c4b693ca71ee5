//! `cargo run -p lambent-site`: writes every page, our static files and the npm assets into `site/dist/`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

fn build(site: &Path) -> Result<PathBuf, String> {
    let dist = site.join("dist");
    if dist.exists() {
        std::fs::remove_dir_all(&dist).map_err(|e| format!("cannot clear {}: {e}", dist.display()))?;
    }
    for (path, html) in lambent_site::pages() {
        let target = dist.join(path);
        std::fs::create_dir_all(target.parent().unwrap_or(&dist)).map_err(|e| e.to_string())?;
        std::fs::write(&target, html).map_err(|e| format!("{}: {e}", target.display()))?;
    }
    copy_dir(&site.join("static"), &dist.join("static")).map_err(|e| format!("static/: {e}"))?;
    let modules = site.join("node_modules");
    std::fs::create_dir_all(dist.join("vendor")).map_err(|e| e.to_string())?;
    for (from, to) in lambent_site::VENDOR {
        let bytes = std::fs::read(modules.join(from)).map_err(|e| {
            format!("{from}: {e} (run `npm ci --prefix site` first: the assets come from site/package-lock.json)")
        })?;
        // Redoc hard-codes one image from its CDN; the site serves its own copy instead, so nothing leaves the
        // origin (and the CSP has nothing to block).
        let bytes = if *to == "redoc.standalone.js" {
            String::from_utf8_lossy(&bytes)
                .replace(lambent_site::REDOC_CDN_LOGO, "/static/redocly-logo.svg")
                .into_bytes()
        } else {
            bytes
        };
        std::fs::write(dist.join("vendor").join(to), bytes).map_err(|e| format!("{to}: {e}"))?;
    }
    Ok(dist)
}

fn main() -> ExitCode {
    let site = Path::new(env!("CARGO_MANIFEST_DIR"));
    match build(site) {
        Ok(dist) => {
            println!("site built into {}", dist.display());
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("build-site: {err}");
            ExitCode::FAILURE
        }
    }
}
