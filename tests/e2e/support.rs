//! Starting the real `tina4-wasm` binary on a free port with real
//! components, and real WebSocket and HTTP clients to drive it.
//!
//! Every wait is bounded by [`WAIT`], so a broken server fails a test
//! instead of hanging it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The longest any single step of a test may take.
pub const WAIT: Duration = Duration::from_secs(15);

/// Awaits `fut`, failing the test with `what` if it takes longer than [`WAIT`].
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {WAIT:?} waiting for {what}"))
}

/// The repository's root folder.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the repository")
        .to_path_buf()
}

/// Cargo's target folder these tests were built in.
pub fn target_dir() -> PathBuf {
    profile_dir().parent().expect("target dir").to_path_buf()
}

/// `<target>/<profile>`, from where this test binary lives (`<target>/<profile>/deps/`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary is in <target>/<profile>/deps")
        .to_path_buf()
}

/// The host binary built alongside these tests.
pub fn host_binary() -> PathBuf {
    let bin = std::env::var_os("TINA4_WASM_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| profile_dir().join("tina4-wasm"));
    assert!(
        bin.is_file(),
        "{} not found: build it first (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// A compiled app component, e.g. `component("chat")`.
pub fn component(name: &str) -> PathBuf {
    let dir = std::env::var_os("TINA4_WASM_COMPONENTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("wasm32-wasip2/guest"));
    let file = dir.join(format!("{}.wasm", name.replace('-', "_")));
    assert!(
        file.is_file(),
        "{} not found: build the guests first (scripts/test.sh builds them)",
        file.display()
    );
    file
}

/// The languages the example apps are written in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Language {
    /// `examples/<app>`: the Rust examples (and every test fixture).
    #[default]
    Rust,
    /// `examples/javascript/<app>`.
    Javascript,
    /// `examples/python/<app>`.
    Python,
}

impl Language {
    /// Its folder under `examples/` and under the built apps folder.
    fn folder(self) -> Option<&'static str> {
        match self {
            Self::Rust => None,
            Self::Javascript => Some("javascript"),
            Self::Python => Some("python"),
        }
    }
}

/// Where `scripts/test.sh` builds the JavaScript and Python examples
/// (`tina4-wasm build`), one folder per language.
fn built_examples_dir() -> PathBuf {
    std::env::var_os("TINA4_WASM_EXAMPLES")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("guest-apps"))
}

/// The compile cache `scripts/test.sh` precompiled those examples into:
/// servers share it, so a 19 MB Python app, or the template engine, is
/// compiled once per build, not once per test.
pub fn examples_cache_dir() -> PathBuf {
    built_examples_dir().join("cache")
}

/// The component of example `name` written in `language`.
pub fn example(language: Language, name: &str) -> PathBuf {
    let Some(folder) = language.folder() else {
        return component(name);
    };
    let file = built_examples_dir()
        .join(folder)
        .join(format!("{name}.wasm"));
    assert!(
        file.is_file(),
        "{} not found: build the examples first (scripts/test.sh does)",
        file.display()
    );
    file
}

/// Copies app `name`'s component in `language` into `apps`, with its
/// templates and public folders when it is an example that has them (as
/// `scripts/serve.sh` does; every language's version shares the folders
/// in `examples/<app>/`).
pub fn install_app(language: Language, name: &str, apps: &Path) {
    std::fs::copy(example(language, name), apps.join(format!("{name}.wasm")))
        .expect("copying a component");
    let settings = repo_root()
        .join("examples")
        .join(name)
        .join(format!("{name}.toml"));
    if settings.is_file() {
        std::fs::copy(settings, apps.join(format!("{name}.toml"))).expect("copying its settings");
    }
    for folder in ["templates", "public"] {
        let source = repo_root().join("examples").join(name).join(folder);
        if source.is_dir() {
            copy_dir(&source, &apps.join(name).join(folder));
        }
    }
}

/// Runs a test body once per language the examples are written in, as
/// `<test>::rust`, `<test>::javascript` and `<test>::python`:
/// `each_language! { async fn name(language) { ... } }`.
macro_rules! each_language {
    ($(#[$meta:meta])* async fn $name:ident($language:ident) $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($language: crate::support::Language) $body

            #[tokio::test]
            async fn rust() {
                run(crate::support::Language::Rust).await
            }

            #[tokio::test]
            async fn javascript() {
                run(crate::support::Language::Javascript).await
            }

            #[tokio::test]
            async fn python() {
                run(crate::support::Language::Python).await
            }
        }
    };
}
pub(crate) use each_language;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("creating a folder");
    for entry in std::fs::read_dir(from).expect("reading a folder").flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copying a file");
        }
    }
}

/// A running `tina4-wasm serve`, killed when dropped.
pub struct Server {
    /// The process.
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Where its admin endpoints are.
    pub admin: Option<SocketAddr>,
    /// Holds its apps folder (deleted when dropped).
    _root: tempfile::TempDir,
    /// The apps folder it serves.
    apps: PathBuf,
    /// Everything it has logged so far.
    log: Arc<Mutex<String>>,
    /// Woken on every new log line.
    logged: Arc<Notify>,
}

/// How to start a server.
#[derive(Default)]
pub struct ServerOptions {
    /// Components to copy into the apps folder, by example name.
    pub apps: Vec<&'static str>,
    /// Extra files to write into the apps folder: (file name, bytes).
    pub files: Vec<(&'static str, Vec<u8>)>,
    /// Extra command-line flags for `serve`.
    pub args: Vec<String>,
    /// Serve this apps folder as it is instead of a fresh one.
    pub apps_dir: Option<PathBuf>,
    /// Use this compile cache folder instead of a fresh one.
    pub cache_dir: Option<PathBuf>,
    /// Extra environment variables for the server.
    pub env: Vec<(String, String)>,
    /// Run the server in this folder.
    pub cwd: Option<PathBuf>,
    /// Listen on this port instead of a free one.
    pub port: Option<u16>,
    /// The language of the example apps in `apps`.
    pub language: Language,
}

impl Server {
    /// Serves the named example/fixture apps.
    pub async fn start(apps: &[&'static str]) -> Self {
        Self::start_with(ServerOptions {
            apps: apps.to_vec(),
            ..Default::default()
        })
        .await
    }

    /// Serves the named example apps, written in `language`.
    pub async fn start_in(language: Language, apps: &[&'static str]) -> Self {
        Self::start_with(ServerOptions {
            apps: apps.to_vec(),
            language,
            ..Default::default()
        })
        .await
    }

    /// Serves with full control over the apps folder and flags.
    pub async fn start_with(options: ServerOptions) -> Self {
        let root = tempfile::tempdir().expect("temp folder");
        let apps = options
            .apps_dir
            .clone()
            .unwrap_or_else(|| root.path().join("apps"));
        // One cache for every server that does not test the cache itself:
        // each component (and the template engine) is compiled once.
        let cache = options.cache_dir.clone().unwrap_or_else(examples_cache_dir);
        std::fs::create_dir_all(&apps).expect("apps folder");
        for name in &options.apps {
            install_app(options.language, name, &apps);
        }
        for (file, bytes) in &options.files {
            std::fs::write(apps.join(file), bytes).expect("writing a file");
        }
        let mut command = Command::new(host_binary());
        if let Some(cwd) = &options.cwd {
            command.current_dir(cwd);
        }
        let mut child = command
            .arg("serve")
            .arg(&apps)
            .args(["--host", "127.0.0.1", "--admin-listen", "127.0.0.1:0"])
            .arg("--port")
            .arg(options.port.unwrap_or(0).to_string())
            .arg("--cache-dir")
            .arg(&cache)
            .args(&options.args)
            .env("RUST_LOG", "info")
            .env_remove("TINA4_PORT")
            // Apps' storage in the server's own folder (a `--data-dir`
            // flag wins), never the user's.
            .env("TINA4_DATA_DIR", root.path().join("data"))
            .envs(options.env.iter().cloned())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("starting tina4-wasm");

        let log = Arc::new(Mutex::new(String::new()));
        let logged = Arc::new(Notify::new());
        let stderr = child.stderr.take().expect("stderr");
        {
            let (log, logged) = (log.clone(), logged.clone());
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                    logged.notify_waiters();
                }
            });
        }
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut admin = None;
        let addr = within("the server to listen", async {
            loop {
                let line = lines.next_line().await.ok().flatten().unwrap_or_else(|| {
                    panic!(
                        "tina4-wasm exited before listening; log:\n{}",
                        log.lock().unwrap()
                    )
                });
                if let Some(addr) = line.strip_prefix("admin on http://") {
                    admin = Some(addr.parse::<SocketAddr>().expect("admin address"));
                }
                let listening = line
                    .strip_prefix("listening on http://")
                    .or_else(|| line.strip_prefix("listening on https://"));
                if let Some(addr) = listening {
                    break addr.parse::<SocketAddr>().expect("listen address");
                }
            }
        })
        .await;
        // Keep draining stdout so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let server = Self {
            child,
            addr,
            admin,
            _root: root,
            apps,
            log,
            logged,
        };
        // Everything logged while starting has been read once this has.
        server.wait_for_log(&["listening"]).await;
        server
    }

    /// The apps folder it serves.
    pub fn apps_dir(&self) -> &Path {
        &self.apps
    }

    /// `ws://addr/path`.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// `http://admin/path`, on the admin listener.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin.expect("an admin listener"))
    }

    /// `http://addr/path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The log so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until a log line contains every one of `needles`; returns that line.
    pub async fn wait_for_log(&self, needles: &[&str]) -> String {
        self.wait_for_nth_log(needles, 1).await
    }

    /// How many log lines so far contain every one of `needles`.
    pub fn count_log(&self, needles: &[&str]) -> usize {
        self.log
            .lock()
            .unwrap()
            .lines()
            .filter(|line| needles.iter().all(|n| line.contains(n)))
            .count()
    }

    /// Waits until the `n`th log line containing every one of `needles`
    /// (counting from 1); returns that line.
    pub async fn wait_for_nth_log(&self, needles: &[&str], n: usize) -> String {
        self.wait_for_log_within(needles, n, WAIT).await
    }

    /// [`wait_for_nth_log`](Self::wait_for_nth_log) with another time limit.
    pub async fn wait_for_log_within(&self, needles: &[&str], n: usize, limit: Duration) -> String {
        let find = || {
            self.log
                .lock()
                .unwrap()
                .lines()
                .filter(|line| needles.iter().all(|n| line.contains(n)))
                .nth(n - 1)
                .map(str::to_string)
        };
        let wait = async {
            loop {
                let notified = self.logged.notified();
                if let Some(line) = find() {
                    return line;
                }
                notified.await;
            }
        };
        tokio::time::timeout(limit, wait).await.unwrap_or_else(|_| {
            panic!(
                "timed out after {limit:?} waiting for log line #{n} with {needles:?}; log:\n{}",
                self.log()
            )
        })
    }

    /// Connects a WebSocket client to `path`.
    pub async fn connect(&self, path: &str) -> Client {
        Client::connect(&self.ws_url(path)).await
    }

    /// The status of `GET path`.
    pub async fn get_status(&self, path: &str) -> u16 {
        http()
            .get(self.url(path))
            .send()
            .await
            .expect("a GET request")
            .status()
            .as_u16()
    }

    /// The JSON body of `GET path`.
    pub async fn get_json(&self, path: &str) -> Value {
        http()
            .get(self.url(path))
            .send()
            .await
            .expect("a GET request")
            .json()
            .await
            .expect("a JSON body")
    }

    /// `None` if a WebSocket upgrade to `path` with these extra headers
    /// succeeds; the HTTP status it was refused with otherwise.
    pub async fn upgrade_status(
        &self,
        path: &str,
        headers: &[(&'static str, &str)],
    ) -> Option<u16> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = self.ws_url(path).into_client_request().unwrap();
        for (name, value) in headers {
            request.headers_mut().insert(*name, value.parse().unwrap());
        }
        match tokio_tungstenite::connect_async(request).await {
            Ok(_) => None,
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Some(r.status().as_u16()),
            Err(other) => panic!("upgrading to {path}: {other}"),
        }
    }

    /// What its admin listener's `/metrics` says now.
    pub async fn metrics(&self) -> String {
        let response = http()
            .get(self.admin_url("/metrics"))
            .send()
            .await
            .expect("scraping /metrics");
        assert_eq!(response.status(), 200);
        response.text().await.expect("the metrics text")
    }

    /// The most memory the process has held so far (its peak RSS), in bytes.
    pub fn peak_rss(&self) -> u64 {
        let pid = self.child.id().expect("the server is running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("its status");
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in its status");
        kib * 1024
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("polling the server").is_none()
    }
}

/// A WebSocket client.
pub struct Client {
    /// The socket.
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    /// Connects, failing the test if the handshake is refused.
    pub async fn connect(url: &str) -> Self {
        let (ws, _) = within(
            &format!("connecting to {url}"),
            tokio_tungstenite::connect_async(url),
        )
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
        Self { ws }
    }

    /// Wraps a socket connected by other means (custom headers).
    pub fn from_stream(ws: WebSocketStream<MaybeTlsStream<TcpStream>>) -> Self {
        Self { ws }
    }

    /// Sends a text message.
    pub async fn send(&mut self, text: &str) {
        within("sending", self.ws.send(Message::text(text)))
            .await
            .expect("sending a message");
    }

    /// Sends a text message unless the socket takes none of it within
    /// `limit` (the peer has stopped reading); whether it went.
    pub async fn send_within(&mut self, text: &str, limit: Duration) -> bool {
        matches!(
            tokio::time::timeout(limit, self.ws.send(Message::text(text))).await,
            Ok(Ok(()))
        )
    }

    /// Sends `value` as JSON text.
    pub async fn send_json(&mut self, value: Value) {
        self.send(&value.to_string()).await;
    }

    /// Sends a binary message.
    pub async fn send_binary(&mut self, data: &[u8]) {
        within("sending", self.ws.send(Message::binary(data.to_vec())))
            .await
            .expect("sending a message");
    }

    /// The next data message (text or binary), skipping pings and pongs.
    pub async fn next_message(&mut self) -> Message {
        within("a message", async {
            loop {
                match self.ws.next().await {
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(message)) => return message,
                    Some(Err(err)) => panic!("connection failed: {err}"),
                    None => panic!("connection ended"),
                }
            }
        })
        .await
    }

    /// The next message, which must be text.
    pub async fn recv(&mut self) -> String {
        match self.next_message().await {
            Message::Text(text) => text.to_string(),
            other => panic!("expected a text message, got {other:?}"),
        }
    }

    /// The next message, which must be JSON text.
    pub async fn recv_json(&mut self) -> Value {
        let text = self.recv().await;
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }

    /// Reads until the server's close frame; returns its code and reason.
    pub async fn expect_close(&mut self) -> (u16, String) {
        match self.next_message().await {
            Message::Close(Some(frame)) => (u16::from(frame.code), frame.reason.to_string()),
            Message::Close(None) => (1005, String::new()),
            other => panic!("expected a close frame, got {other:?}"),
        }
    }

    /// Pings and waits for the pong, skipping data messages: the
    /// connection is still open and read.
    pub async fn pong(&mut self) {
        within("a pong", async {
            self.ws
                .send(Message::Ping(b"still there?".to_vec().into()))
                .await
                .expect("pinging");
            loop {
                match self.ws.next().await {
                    Some(Ok(Message::Pong(_))) => return,
                    Some(Ok(Message::Close(frame))) => panic!("closed instead: {frame:?}"),
                    Some(Ok(_)) => continue,
                    Some(Err(err)) => panic!("connection failed: {err}"),
                    None => panic!("connection ended"),
                }
            }
        })
        .await;
    }

    /// Reads past data messages to the server's close frame; its code
    /// and reason.
    pub async fn close_after_messages(&mut self) -> (u16, String) {
        loop {
            match self.next_message().await {
                Message::Close(Some(frame)) => {
                    return (u16::from(frame.code), frame.reason.to_string());
                }
                Message::Close(None) => return (1005, String::new()),
                _ => continue,
            }
        }
    }

    /// Closes from the client side with 1000 and waits for the server's reply.
    pub async fn close(mut self) {
        let frame = tokio_tungstenite::tungstenite::protocol::CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        within("closing", async {
            let _ = self.ws.close(Some(frame)).await;
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await;
    }
}

/// One round trip on the bystander: it must keep answering.
pub async fn still_answers(bystander: &mut Client, tag: &str) {
    bystander.send(tag).await;
    assert_eq!(bystander.recv().await, format!("Echo: {tag}"));
}

/// Retries `probe` (every 20 ms) until it returns `Some`, for conditions
/// that are only promised within a bound (counts shared across instances);
/// fails the test after [`WAIT`].
pub async fn eventually<T, F: Future<Output = Option<T>>>(
    what: &str,
    mut probe: impl FnMut() -> F,
) -> T {
    within(what, async {
        loop {
            if let Some(value) = probe().await {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// The value of the sample `name{...}` whose labels include all of `labels`.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} "))
        })
        .filter(|line| {
            labels
                .iter()
                .all(|(k, v)| line.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// A response's content type (empty when it has none).
pub fn content_type(response: &reqwest::Response) -> &str {
    response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// An HTTP client that talks to loopback only.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(WAIT)
        .build()
        .expect("HTTP client")
}

impl Server {
    /// Kills the process outright (SIGKILL): no goodbye, no clean-up.
    pub async fn kill(mut self) {
        self.child.start_kill().expect("killing the server");
        within("the server to die", self.child.wait())
            .await
            .expect("waiting for the server");
    }

    /// Sends SIGTERM and waits for the process to exit; returns its exit code.
    pub async fn terminate(mut self) -> Option<i32> {
        let pid = self.child.id().expect("server still running").to_string();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("running kill");
        assert!(status.success());
        within("the server to exit", self.child.wait())
            .await
            .expect("waiting for the server")
            .code()
    }
}

/// How a new version of a file is put in place, as users and tools do it.
#[derive(Debug, Clone, Copy)]
pub enum Install {
    /// `cp new.wasm apps/app.wasm`: written in place, then closed.
    CopyOver,
    /// Written to a temporary name in the folder, then renamed over.
    WriteThenRename,
    /// Written elsewhere on the same filesystem, then moved in.
    MoveIntoPlace,
}

impl Install {
    pub const ALL: [Install; 3] = [Self::CopyOver, Self::WriteThenRename, Self::MoveIntoPlace];

    /// Puts `bytes` at `dir/file` this way.
    pub fn put(self, dir: &Path, file: &str, bytes: &[u8]) {
        let target = dir.join(file);
        match self {
            Self::CopyOver => std::fs::write(&target, bytes).expect("writing in place"),
            Self::WriteThenRename => {
                let temporary = dir.join(format!("{file}.tmp"));
                std::fs::write(&temporary, bytes).expect("writing a temporary file");
                std::fs::rename(&temporary, &target).expect("renaming into place");
            }
            Self::MoveIntoPlace => {
                let staging = dir.parent().expect("apps folder parent").join("staging");
                std::fs::create_dir_all(&staging).expect("staging folder");
                let staged = staging.join(file);
                std::fs::write(&staged, bytes).expect("writing elsewhere");
                std::fs::rename(&staged, &target).expect("moving into place");
            }
        }
    }
}

/// Appends a custom section `name` holding `content` to a component.
pub fn append_section(bytes: &mut Vec<u8>, name: &str, content: &[u8]) {
    fn leb128(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let mut section = Vec::new();
    leb128(name.len(), &mut section);
    section.extend_from_slice(name.as_bytes());
    section.extend_from_slice(content);
    bytes.push(0); // custom section id
    leb128(section.len(), bytes);
    bytes.extend_from_slice(&section);
}

/// Example `name` in `language` with a custom section appended: the same app,
/// but different bytes (so a different version to the host).
pub fn variant_in(language: Language, name: &str, tag: &str) -> Vec<u8> {
    let mut bytes = std::fs::read(example(language, name)).expect("reading a component");
    append_section(&mut bytes, "tina4-test-variant", tag.as_bytes());
    bytes
}

/// Component `name` with `files` (path, content) packed in as `tina4-wasm
/// build` packs an app's templates and public files: the `tina4-files`
/// section, `T4F1` then each file's u16 path length, path, u32 length and
/// content, little-endian.
pub fn with_packed_files(name: &str, files: &[(&str, &str)]) -> Vec<u8> {
    let mut payload = b"T4F1".to_vec();
    for (path, content) in files {
        payload.extend_from_slice(&(path.len() as u16).to_le_bytes());
        payload.extend_from_slice(path.as_bytes());
        payload.extend_from_slice(&(content.len() as u32).to_le_bytes());
        payload.extend_from_slice(content.as_bytes());
    }
    let mut bytes = std::fs::read(component(name)).expect("reading a component");
    append_section(&mut bytes, "tina4-files", &payload);
    bytes
}
