//! LiteLLM's proxy (PyPI `litellm[proxy]`, pinned in `scripts/test-requirements.txt`), serving
//! `/v1/responses` for models bridged to a chat-completions upstream ([`crate::chat::FakeChat`]: the model
//! `openai/chat_completions/<name>` opts into the bridge, which a provider with a Responses API of its own,
//! like `hosted_vllm/`, would skip), offline.
//!
//! Starting it costs ~10 s and ~350 MB, so a test binary starts it once ([`LiteLlm::shared`]) and every test
//! uses its own model name (`bridge-<n>` → upstream model `model-<n>`), so none takes another's replies. It
//! runs on a runtime of its own that lives as long as the process, and a watchdog ends it when the process
//! that started it is gone (a static is never dropped).

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::chat::FakeChat;

/// How many models the shared proxy routes (`bridge-0` … `bridge-7`).
pub const MODELS: usize = 8;

/// The shared proxy and its upstream.
pub struct LiteLlm {
    /// `http://127.0.0.1:<port>/v1`, where Lambent's provider points.
    pub base_url: String,
    /// The master key clients send as their API key.
    pub master_key: String,
    /// The chat-completions fake every model is routed to.
    pub upstream: FakeChat,
}

impl LiteLlm {
    /// The process's proxy, started on first use; panics saying what is missing when it cannot start.
    pub fn shared() -> &'static LiteLlm {
        static SHARED: OnceLock<LiteLlm> = OnceLock::new();
        SHARED.get_or_init(|| start().unwrap_or_else(|e| panic!("LiteLLM: {e}")))
    }

    /// The name a test sends as its model (`n` below [`MODELS`]), and the upstream model it becomes.
    pub fn model(n: usize) -> (String, String) {
        (format!("bridge-{n}"), format!("model-{n}"))
    }
}

fn start() -> crate::Result<LiteLlm> {
    let binary = std::env::var_os("LAMBENT_TEST_LITELLM").map(PathBuf::from).ok_or(
        "LAMBENT_TEST_LITELLM is not set: run with scripts/test (or `source scripts/test-tools.sh`), which \
         installs the test tools and sets it",
    )?;
    // The upstream lives on a runtime of its own: each test's runtime ends with the test.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(async move {
            let _ = tx.send(FakeChat::start().await);
            std::future::pending::<()>().await;
        });
    });
    let upstream = rx.recv().map_err(|e| format!("the fake chat server did not start: {e}"))?;
    let dir = tempfile::tempdir()?.keep();
    let mut config = String::from("model_list:\n");
    for n in 0..MODELS {
        let (name, model) = LiteLlm::model(n);
        config.push_str(&format!(
            "  - model_name: {name}\n    litellm_params: {{model: openai/chat_completions/{model}, api_base: {}, api_key: x}}\n",
            upstream.base_url
        ));
    }
    config.push_str("general_settings: {master_key: os.environ/LITELLM_MASTER_KEY}\n");
    let config_path = dir.join("config.yaml");
    std::fs::write(&config_path, config)?;
    // Recent versions refuse weak master keys.
    let mut bytes = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).map_err(|_| "no randomness")?;
    let master_key = format!("sk-{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>());
    let port = crate::free_port()?;
    let log = std::fs::File::create(dir.join("litellm.log"))?;
    // The watchdog: when this process is gone, so is the proxy.
    let script = format!(
        "\"$0\" --config \"$1\" --host 127.0.0.1 --port {port} --num_workers 1 & child=$!; \
         while kill -0 {parent} 2>/dev/null && kill -0 $child 2>/dev/null; do sleep 1; done; kill $child 2>/dev/null",
        parent = std::process::id()
    );
    std::process::Command::new("sh")
        .args(["-c", &script])
        .arg(&binary)
        .arg(&config_path)
        .env("LITELLM_MASTER_KEY", &master_key)
        .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        .env("LITELLM_LOG", "ERROR")
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    let deadline = Instant::now() + Duration::from_secs(90);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(LiteLlm { base_url: format!("http://127.0.0.1:{port}/v1"), master_key, upstream });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("LiteLLM did not listen on {port} within 90 s (its log: {})", dir.join("litellm.log").display()).into())
}
