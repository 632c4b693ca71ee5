//! Generated clients, as an API consumer makes and uses them: `openapi-python-client` and `@hey-api/openapi-ts`
//! generate from the live document of a local server, then the examples the README shows
//! (`tests/clients/python/flow.py`, `tests/clients/typescript/flow.ts`) log in, create an agent, a tool and a link,
//! page through a list, read a 404 as a typed error, and run a chat and a streamed turn against the fake upstream.
//!
//! The generators are pinned: openapi-python-client and httpx-sse in `scripts/test-requirements.txt`, the npm
//! packages in `tests/clients/typescript/package-lock.json` (`scripts/test` installs both).

use std::path::{Path, PathBuf};
use std::process::Output;

use tokio::process::Command;

use crate::helpers::TestApp;
use lambent_testkit::openai::{FakeOpenAi, frames, text_events};

/// How the README generates each client: the same commands, with the local server's address.
const PYTHON_GENERATE: &str =
    "openapi-python-client generate --url {url}/api/openapi.json --meta none --output-path lambent_client";
const TYPESCRIPT_GENERATE: &str = "npx @hey-api/openapi-ts -i {url}/api/openapi.json -o lambent-client";

/// What both examples print, given the conversation the fake upstream plays.
const EXPECTED: &str = "agent weather may call get_weather: True
3 agents over 2 pages: first, second, weather
agent 999999: Not found.
chat (completed): Sunny, 21°C.
stream (completed): Cloudy, 3°C.
";

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("clients")
}

/// A server with two agents already, and the fake upstream's two answers (the chat, then the stream).
async fn server() -> (TestApp, FakeOpenAi) {
    let fake = FakeOpenAi::start().await;
    let app = TestApp::spawn_with(&fake.env()).await;
    for name in ["first", "second"] {
        app.create("/api/agents/", serde_json::json!({"name": name})).await;
    }
    fake.push_stream(frames(text_events("resp_chat", &["Sunny, ", "21°C."])));
    fake.push_stream(frames(text_events("resp_stream", &["Cloudy, ", "3°C."])));
    (app, fake)
}

/// Runs a shell command line (the README's form), failing the test with its output unless it succeeds.
async fn run(line: &str, dir: &Path, env: &[(&str, String)]) -> Output {
    let output = Command::new("sh")
        .arg("-c")
        .arg(line)
        .current_dir(dir)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {line}: {e}"));
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    assert!(output.status.success(), "{line} failed:\n{}\n{}", text(&output.stdout), text(&output.stderr));
    output
}

fn login_env(app: &TestApp) -> Vec<(&'static str, String)> {
    vec![
        ("LAMBENT_URL", app.url("").trim_end_matches('/').to_owned()),
        ("LAMBENT_USERNAME", "alice".to_owned()),
        ("LAMBENT_PASSWORD", "alice-password".to_owned()),
    ]
}

#[tokio::test]
async fn a_python_client_generated_from_the_document_runs_the_whole_flow() {
    let (app, fake) = server().await;
    let work = tempfile::tempdir().unwrap();
    let url = app.url("").trim_end_matches('/').to_owned();
    let generated =
        run(&format!("{} --fail-on-warning", PYTHON_GENERATE.replace("{url}", &url)), work.path(), &[]).await;
    let log = String::from_utf8_lossy(&generated.stdout);
    assert!(!log.to_lowercase().contains("warning"), "the generator warned:\n{log}");

    let flow = clients_dir().join("python/flow.py");
    let mut env = login_env(&app);
    env.push(("PYTHONPATH", work.path().display().to_string()));
    let output = run(&format!("python3 {}", flow.display()), work.path(), &env).await;
    assert_eq!(String::from_utf8_lossy(&output.stdout), EXPECTED);
    assert_eq!(fake.requests().len(), 2, "one upstream response per turn");
}

#[tokio::test]
async fn a_typescript_client_generated_from_the_document_type_checks_and_runs_the_whole_flow() {
    let (app, fake) = server().await;
    let dir = clients_dir().join("typescript");
    assert!(dir.join("node_modules").is_dir(), "run `npm ci --prefix tests/clients/typescript` (scripts/test does)");
    let url = app.url("").trim_end_matches('/').to_owned();
    run(&TYPESCRIPT_GENERATE.replace("{url}", &url), &dir, &[]).await;
    run("npx tsc --noEmit", &dir, &[]).await;
    run("npx tsc --outDir dist", &dir, &[]).await;
    let output = run("node dist/flow.js", &dir, &login_env(&app)).await;
    // JavaScript prints booleans in lower case.
    assert_eq!(String::from_utf8_lossy(&output.stdout), EXPECTED.replacen("True", "true", 1));
    assert_eq!(fake.requests().len(), 2, "one upstream response per turn");
}

#[test]
fn the_readme_shows_the_client_examples_exactly_as_the_tests_run_them() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")).unwrap();
    for command in [PYTHON_GENERATE, TYPESCRIPT_GENERATE] {
        let shown = command.replace("{url}", "http://localhost:8000");
        assert!(readme.contains(&shown), "the README shows `{shown}`");
    }
    for (file, fence) in [("python/flow.py", "```python\n"), ("typescript/flow.ts", "```ts\n")] {
        let source = std::fs::read_to_string(clients_dir().join(file)).unwrap();
        assert!(readme.contains(&format!("{fence}{source}```")), "the README shows tests/clients/{file} verbatim");
    }
}
