//! The site as a new user gets it: the `lambent` binary itself (built from `local/src/main.rs`), started in an
//! empty directory with no `site/dist` and no `node_modules` anywhere it could read, serves every page and every
//! file the pages load, with the security headers; its terminal shows one plain line per request; and the site
//! build writes every file the deploy uploads.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::helpers::http_client;

/// The pages, at the paths the local server and CloudFront serve them.
const PAGES: [&str; 5] = ["/", "/dashboard/", "/playground/", "/swagger/", "/redoc/"];

/// `lambent serve` as `cargo run` starts it, in an empty working directory, over a database in the same
/// temporary folder; stdout and stderr go to files, as when redirected.
struct Lambent {
    /// Killed when the test ends (`kill_on_drop`).
    _child: Child,
    base: String,
    dir: tempfile::TempDir,
}

impl Lambent {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let cwd = dir.path().join("empty");
        std::fs::create_dir(&cwd).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(env!("CARGO_BIN_EXE_lambent-under-test"))
            .current_dir(&cwd)
            .env_clear()
            .env("DATABASE_URL", format!("file:{}", dir.path().join("lambent.db").display()))
            .env("BIND", format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.path().join("stdout")).unwrap())
            .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("start lambent");
        let base = format!("http://127.0.0.1:{port}");
        let client = http_client();
        for _ in 0..300 {
            // Up once it answers: without a model provider the health check says 503 (not ready to chat).
            if client.get(format!("{base}/api/health/")).send().await.is_ok() {
                return Self { _child: child, base, dir };
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "lambent did not come up on {base}; stderr:\n{}",
            std::fs::read_to_string(dir.path().join("stderr")).unwrap()
        );
    }

    fn output(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap()
    }
}

/// The relative specifiers a module imports (`import { x } from "./js/api.js";`).
fn module_imports(source: &str) -> Vec<String> {
    source
        .lines()
        .filter(|line| line.starts_with("import "))
        .filter_map(|line| line.split(" from \"./").nth(1))
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_owned)
        .collect()
}

/// Every `href` and `src` in a page, in order.
fn references(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attribute in [" href=\"", " src=\""] {
        for (at, _) in html.match_indices(attribute) {
            let rest = &html[at + attribute.len()..];
            let reference = &rest[..rest.find('"').expect("a closed attribute")];
            // A link into a page (`/dashboard/#agents`) loads the page itself; one within this page, nothing.
            let path = reference.split('#').next().unwrap_or_default();
            if !path.is_empty() && !out.iter().any(|seen| seen == path) {
                out.push(path.to_owned());
            }
        }
    }
    out
}

/// What a path must be served as, by its form: a page, or a file by its extension.
fn expected_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        _ if path.ends_with('/') => "text/html",
        Some("css") => "text/css",
        Some("js") => "text/javascript",
        Some("svg") => "image/svg+xml",
        Some("ico") => "image/x-icon",
        Some("json") => "application/json",
        _ => panic!("{path}: no expected content type"),
    }
}

#[tokio::test]
async fn a_fresh_clone_s_lambent_serves_every_page_and_what_it_loads_from_an_empty_directory() {
    let server = Lambent::start().await;
    let client = http_client();
    let mut paths: Vec<String> = PAGES.iter().map(|p| (*p).to_owned()).collect();
    paths.push("/favicon.ico".to_owned());
    for page in PAGES {
        let html = client.get(format!("{}{page}", server.base)).send().await.unwrap().text().await.unwrap();
        let references = references(&html);
        // The API reference pages load the build of Pico that styles only the site's chrome (`.pico`).
        let pico = ["/vendor/pico.min.css", "/vendor/pico.conditional.min.css"];
        assert!(references.iter().any(|r| pico.contains(&r.as_str())), "{page} loads Pico: {references:?}");
        assert!(references.iter().any(|r| r == "/static/favicon.svg"), "{page} names its icon: {references:?}");
        for reference in references {
            assert!(
                reference.starts_with('/') && !reference.starts_with("//"),
                "{page} refers to another origin: {reference}"
            );
            if !paths.contains(&reference) {
                paths.push(reference);
            }
        }
    }
    // The one image Redoc's bundle names, which the site serves instead of Redoc's CDN.
    paths.push("/static/redocly-logo.svg".to_owned());
    for expected in
        ["/static/app.js", "/vendor/swagger-ui-bundle.js", "/vendor/swagger-ui.css", "/vendor/redoc.standalone.js"]
    {
        assert!(paths.iter().any(|p| p == expected), "no page loads {expected}: {paths:?}");
    }

    // Every path is fetched below; a module's imports (`from "./js/api.js"`) join the list as they are found.
    let mut next = 0;
    while let Some(path) = paths.get(next).cloned() {
        next += 1;
        let response = client.get(format!("{}{path}", server.base)).send().await.unwrap();
        let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        assert_eq!(response.status(), 200, "{path}");
        let content_type = header("content-type").unwrap_or_default();
        assert!(content_type.starts_with(expected_type(&path)), "{path} is served as {content_type:?}");
        assert_eq!(header("content-security-policy").as_deref(), Some(lambent_site::CONTENT_SECURITY_POLICY), "{path}");
        assert_eq!(header("x-content-type-options").as_deref(), Some("nosniff"), "{path}");
        let body = response.bytes().await.unwrap();
        assert!(!body.is_empty(), "{path} is empty");
        if path.starts_with("/static/") && path.ends_with(".js") {
            let dir = &path[..=path.rfind('/').unwrap_or(0)];
            for import in module_imports(&String::from_utf8_lossy(&body)) {
                let resolved = format!("{dir}{}", import.trim_start_matches("./"));
                if !paths.contains(&resolved) {
                    paths.push(resolved);
                }
            }
        }
        if path == "/vendor/redoc.standalone.js" {
            let text = String::from_utf8_lossy(&body);
            assert!(!text.contains(lambent_site::REDOC_CDN_LOGO), "Redoc's bundle still names its CDN");
            assert!(text.contains("/static/redocly-logo.svg"), "Redoc's logo points at our copy");
        }
    }
    for module in ["/static/js/api.js", "/static/js/sse.js", "/static/js/dashboard.js", "/static/js/playground.js"] {
        assert!(paths.iter().any(|p| p == module), "app.js does not load {module}: {paths:?}");
    }
    assert!(server.output("stdout").contains("/dashboard/"), "the first run says where to log in");
}

#[tokio::test]
async fn each_request_is_one_plain_log_line_when_the_output_is_redirected_to_a_file() {
    let server = Lambent::start().await;
    let client = http_client();
    assert_eq!(client.get(format!("{}/dashboard/", server.base)).send().await.unwrap().status(), 200);
    assert_eq!(client.get(format!("{}/api/agents/?page=2", server.base)).send().await.unwrap().status(), 401);
    let mut log = String::new();
    for _ in 0..100 {
        log = server.output("stderr");
        if log.contains("GET /api/agents/ 401") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let line = |needle: &str| {
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(needle)).collect();
        assert_eq!(lines.len(), 1, "one line for {needle:?}:\n{log}");
        lines[0].to_owned()
    };
    let page = line("GET /dashboard/ 200 ");
    // `GET /dashboard/ 200 0.14ms method=GET route="/dashboard/" status=200 duration_ms=0.14`, in the request's
    // span (`request{… request_id=…}`): the same fields the JSON lines carry on Lambda.
    assert!(page.contains(" INFO ") && page.contains("ms method=GET"), "method, path, status, latency: {page}");
    assert!(page.contains("status=200") && page.contains("duration_ms="), "{page}");
    assert!(page.contains("request_id="), "the request's id: {page}");
    assert!(!line("GET /api/agents/ 401 ").contains("page=2"), "the query string stays out of the log");
    assert!(!log.contains("\x1b["), "no colour codes in a redirected log:\n{log:?}");
    assert!(!server.output("stdout").contains("\x1b["), "nor in what the first run prints");
}

/// Every file under `dir`, as paths relative to it with `/` separators; as the site's build script, without an
/// editor's hidden or backup files.
fn files_under(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path: PathBuf = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap();
            if name.starts_with('.') || name.ends_with('~') {
                continue;
            }
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let relative = path.strip_prefix(root).unwrap().to_str().unwrap();
                out.push(relative.replace(std::path::MAIN_SEPARATOR, "/"));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[test]
fn the_site_build_writes_every_file_the_deploy_uploads() {
    // What `cargo run -p lambent-site` does, into a folder of our own; the deploy syncs that folder to S3.
    let dir = tempfile::tempdir().unwrap();
    let dist = dir.path().join("dist");
    lambent_site::build(&dist).unwrap();
    let built = files_under(&dist);

    // CloudFront's root object, and each page where its index function looks (`/dashboard/` → `dashboard/index.html`).
    let template = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml")).unwrap();
    let root = template.lines().find_map(|l| l.trim().strip_prefix("DefaultRootObject: ")).expect("a root object");
    assert!(built.iter().any(|f| f == root), "{root} is not built: {built:?}");
    assert!(template.contains("request.uri += 'index.html'"), "the index function is as this test assumes");
    let mut wanted: Vec<String> = PAGES.iter().map(|p| format!("{}index.html", &p[1..])).collect();
    wanted.extend(["favicon.ico".to_owned(), "static/redocly-logo.svg".to_owned()]);
    for page in PAGES {
        let html = std::fs::read_to_string(dist.join(format!("{}index.html", &page[1..]))).unwrap();
        for reference in references(&html) {
            if !reference.ends_with('/') && !reference.starts_with("/api/") {
                wanted.push(reference[1..].to_owned());
            }
        }
    }
    for file in &wanted {
        assert!(built.contains(file), "{file} is not built: {built:?}");
    }
    // Every file of our own is uploaded, and the dist is exactly what the local server serves.
    let ours = files_under(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../site/static"));
    for file in ours {
        assert!(built.contains(&format!("static/{file}")), "static/{file} is not built");
    }
    let mut served: Vec<String> = lambent_site::files().into_iter().map(|f| f.path).collect();
    served.sort();
    assert_eq!(built, served);
    let redoc = std::fs::read_to_string(dist.join("vendor/redoc.standalone.js")).unwrap();
    assert!(!redoc.contains(lambent_site::REDOC_CDN_LOGO), "the deployed Redoc names no CDN");
}
