//! Embeds every file under `static/` (our own JavaScript, CSS and images) into the library, so the `lambent`
//! binary serves the site without reading the checkout: `STATIC` in `$OUT_DIR/static_files.rs`, one
//! `(path under static/, bytes)` entry per file, sorted. A file added to `static/` is served with no list to edit.

use std::path::{Path, PathBuf};

fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        // An editor's swap or backup file (`.app.js.swp`) is not part of the site.
        if path.file_name().and_then(|n| n.to_str()).is_none_or(|n| n.starts_with('.') || n.ends_with('~')) {
            continue;
        }
        if path.is_dir() {
            walk(&path, files);
        } else {
            files.push(path);
        }
    }
}

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR")).join("static");
    // A directory here: cargo rebuilds when any file under it changes, appears or goes.
    println!("cargo:rerun-if-changed={}", root.display());
    let mut files = Vec::new();
    walk(&root, &mut files);
    files.sort();
    let mut out = String::from(
        "/// Every file under `static/`: (path under `static/`, bytes).\npub const STATIC: &[(&str, &[u8])] = &[\n",
    );
    for file in &files {
        let name = file.strip_prefix(&root).expect("under static/").to_str().expect("a UTF-8 file name");
        let name = name.replace(std::path::MAIN_SEPARATOR, "/");
        out.push_str(&format!("    ({name:?}, include_bytes!({:?})),\n", file.display().to_string()));
    }
    out.push_str("];\n");
    let target = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("static_files.rs");
    std::fs::write(&target, out).unwrap_or_else(|e| panic!("{}: {e}", target.display()));
}
