//! The `palisade` process under test.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The admin token every instance the suite starts has (`PALISADE_BOOTSTRAP_TOKEN` at its
/// first start), unless a test starts it otherwise.
pub const ADMIN_TOKEN: &str = "pal_black-box-suite-admin-token-0123456789";

/// How long the binary gets to bind its listeners and say so on stderr.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// The path of the binary under test: `$PALISADE_BIN` if set, else
/// `$CARGO_TARGET_DIR/debug/palisade`, else `<workspace>/target/debug/palisade`.
///
/// Panics when the file does not exist, saying how to build it.
pub fn binary_path() -> PathBuf {
    let path = if let Some(bin) = std::env::var_os("PALISADE_BIN") {
        PathBuf::from(bin)
    } else if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        PathBuf::from(target).join("debug").join("palisade")
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("target")
            .join("debug")
            .join("palisade")
    };
    assert!(
        path.is_file(),
        "the palisade binary is missing at {}: build it with `cargo build --bin palisade` \
         (or point PALISADE_BIN at it)",
        path.display()
    );
    path
}

/// A port on 127.0.0.1 that nothing listens on right now (bound, then released), for a
/// server a test starts itself. Another process may take it later: for an origin that must
/// stay down, use [`DeadPort`].
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a probe port");
    listener.local_addr().expect("probe port address").port()
}

/// A port on 127.0.0.1 where connections are refused for as long as this value lives: an
/// origin that is down.
///
/// The socket is bound but never listens. Holding the port keeps it from another test's
/// listener and from an outgoing connection's ephemeral port (a socket connecting to a free
/// port in the ephemeral range can be given that very port and connect to itself), either of
/// which turns "refused at once" into a hang.
pub struct DeadPort {
    _socket: socket2::Socket,
    port: u16,
}

impl DeadPort {
    pub fn new() -> DeadPort {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("a socket to hold a dead port");
        let any_port: std::net::SocketAddr = "127.0.0.1:0".parse().expect("loopback address");
        socket.bind(&any_port.into()).expect("bind a dead port");
        let port = socket
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .expect("dead port address")
            .port();
        DeadPort {
            _socket: socket,
            port,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`, as an origin URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Default for DeadPort {
    fn default() -> DeadPort {
        DeadPort::new()
    }
}

/// What the process has printed so far, one entry per line.
#[derive(Default)]
struct Captured {
    stdout: Vec<String>,
    stderr: Vec<String>,
}

/// Lines shared between the reader threads and the test; `changed` wakes a waiting test.
#[derive(Default)]
struct Capture {
    lines: Mutex<Captured>,
    changed: Condvar,
}

/// Which listeners the process must announce before it counts as started.
#[derive(Debug, Clone, Copy, Default)]
struct Expected {
    http: usize,
    https: usize,
    admin: usize,
    /// How long the process may take to announce them.
    within: Duration,
}

/// The listeners the process announced on stderr as `listening kind=K addr=A`.
#[derive(Debug, Default)]
struct Listeners {
    http: Vec<SocketAddr>,
    https: Vec<SocketAddr>,
    admin: Vec<SocketAddr>,
}

/// The outcome of one `palisade check` run; the config file lives as long as this does.
#[derive(Debug)]
pub struct CheckRun {
    pub config_path: PathBuf,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    _dir: TempDir,
}

/// A running `palisade serve`, killed on drop.
///
/// The config is written to `palisade.toml` in a fresh temp dir, with `data_dir` pointed at
/// `data/` in that dir and `admin` on port 0 unless the config sets them (both inserted right
/// under `[server]`, which shifts the lines below). Configs should listen on port 0; the real
/// ports are read from the `listening kind=... addr=...` lines the binary logs to stderr.
/// Stdout (the access log) and stderr are collected line by line in background threads.
pub struct Palisade {
    child: Child,
    dir: TempDir,
    config_path: PathBuf,
    listeners: Listeners,
    capture: Arc<Capture>,
    /// How it was started, for [`Palisade::kill_and_restart`].
    args: Vec<String>,
    expected: Expected,
    bootstrap_token: bool,
    /// `RUST_LOG` for the process, from [`Palisade::start_with_log_filter`].
    log_filter: Option<String>,
    /// Stdout held open and never read, from [`Palisade::start_with_stdout_unread`].
    _unread_stdout: Option<ChildStdout>,
}

/// What the harness does with the process's stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StdoutReader {
    /// Collect its lines (the access log, with `access_log = "stdout"`).
    Collect,
    /// Hold the pipe open and never read it: once the pipe's buffer is full, every write to it
    /// blocks, as behind a log shipper that stopped reading.
    Unread,
}

impl Palisade {
    /// Runs `palisade serve --config <file>` on `config_toml` and waits (up to 10 s) until every
    /// listener the config asks for (`listen`, `listen_tls`, `admin`) has been announced.
    ///
    /// Panics with everything the process printed if it exits or stays silent.
    pub fn start(config_toml: &str) -> Palisade {
        Self::start_from_file(config_toml, true)
    }

    /// [`Palisade::start`] for a configuration that takes long to load (thousands of sites
    /// in a debug build): the process may take up to `within` to announce its listeners.
    pub fn start_large(config_toml: &str, within: Duration) -> Palisade {
        let (dir, config_path, args, mut expected) = Self::prepare(config_toml);
        expected.within = within;
        Self::spawn_with(dir, config_path, &args, expected, true)
    }

    /// [`Palisade::start`], with stdout a pipe nobody reads: a blocked log reader.
    pub fn start_with_stdout_unread(config_toml: &str) -> Palisade {
        let (dir, config_path, args, expected) = Self::prepare(config_toml);
        Self::spawn_reading(
            dir,
            config_path,
            &args,
            expected,
            true,
            StdoutReader::Unread,
            None,
        )
    }

    /// [`Palisade::start`] with `RUST_LOG` set to `filter` (for example
    /// `info,edge::fingerprint=debug`), for a test that reads lines the default level leaves
    /// out ([`Palisade::stderr_text`]).
    pub fn start_with_log_filter(config_toml: &str, filter: &str) -> Palisade {
        let (dir, config_path, args, expected) = Self::prepare(config_toml);
        Self::spawn_reading(
            dir,
            config_path,
            &args,
            expected,
            true,
            StdoutReader::Collect,
            Some(filter),
        )
    }

    fn start_from_file(config_toml: &str, bootstrap_token: bool) -> Palisade {
        let (dir, config_path, args, expected) = Self::prepare(config_toml);
        Self::spawn_with(dir, config_path, &args, expected, bootstrap_token)
    }

    /// The temp dir, the config file written in it, and the arguments that serve it.
    fn prepare(config_toml: &str) -> (TempDir, PathBuf, Vec<String>, Expected) {
        let dir = tempfile::tempdir().expect("temp dir for palisade");
        let config_path = dir.path().join("palisade.toml");
        let config_toml = with_harness_defaults(config_toml, &dir.path().join("data"));
        write_config(&config_path, &config_toml);
        let expected = expected_listeners(&config_toml);
        let args = vec![
            "serve".to_owned(),
            "--config".to_owned(),
            config_path.display().to_string(),
        ];
        (dir, config_path, args, expected)
    }

    /// Runs the one-origin default, `palisade serve --origin URL`, with a cleartext listener and
    /// an admin listener on port 0 and a data dir in a fresh temp dir.
    pub fn serve_origin(origin_url: &str) -> Palisade {
        let dir = tempfile::tempdir().expect("temp dir for palisade");
        let config_path = dir.path().join("palisade.toml");
        let args = vec![
            "serve".to_owned(),
            "--origin".to_owned(),
            origin_url.to_owned(),
            "--listen".to_owned(),
            "127.0.0.1:0".to_owned(),
            "--admin".to_owned(),
            "127.0.0.1:0".to_owned(),
            "--data".to_owned(),
            dir.path().join("data").display().to_string(),
        ];
        let expected = Expected {
            http: 1,
            https: 0,
            admin: 1,
            within: STARTUP_TIMEOUT,
        };
        Self::spawn(dir, config_path, &args, expected)
    }

    /// Runs `palisade ARGS` (a `serve` command line, as a README or a script writes it) with a
    /// fresh temp dir as its working directory, so that relative paths and the default
    /// `./palisade-data` land there, and without `PALISADE_BOOTSTRAP_TOKEN`: a first start
    /// prints its admin token. Waits for one cleartext and one admin listener: pass
    /// `--listen 127.0.0.1:0 --admin 127.0.0.1:0`.
    pub fn serve_args_in_temp_dir(args: &[String]) -> Palisade {
        let dir = tempfile::tempdir().expect("temp dir for palisade");
        let config_path = dir.path().join("palisade.toml");
        let expected = Expected {
            http: 1,
            https: 0,
            admin: 1,
            within: STARTUP_TIMEOUT,
        };
        Self::spawn_with(dir, config_path, args, expected, false)
    }

    /// Runs `palisade check --config <file>` on `config_toml` written verbatim (no `data_dir`
    /// added, so line numbers are the caller's).
    pub fn check(config_toml: &str) -> CheckRun {
        let dir = tempfile::tempdir().expect("temp dir for palisade check");
        let config_path = dir.path().join("palisade.toml");
        write_config(&config_path, config_toml);
        let output = Command::new(binary_path())
            .arg("check")
            .arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .env("NO_COLOR", "1")
            .output()
            .expect("run palisade check");
        CheckRun {
            config_path,
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: strip_ansi(&String::from_utf8_lossy(&output.stderr)),
            _dir: dir,
        }
    }

    /// [`Palisade::start`] without `PALISADE_BOOTSTRAP_TOKEN`: the first start makes an admin
    /// token and prints it on stdout (read it with [`Palisade::access_log_lines`]).
    pub fn start_without_bootstrap_token(config_toml: &str) -> Palisade {
        Self::start_from_file(config_toml, false)
    }

    fn spawn(dir: TempDir, config_path: PathBuf, args: &[String], expected: Expected) -> Palisade {
        Self::spawn_with(dir, config_path, args, expected, true)
    }

    #[allow(unsafe_code)] // libc: prctl, so the binary dies with the test
    fn spawn_with(
        dir: TempDir,
        config_path: PathBuf,
        args: &[String],
        expected: Expected,
        bootstrap_token: bool,
    ) -> Palisade {
        Self::spawn_reading(
            dir,
            config_path,
            args,
            expected,
            bootstrap_token,
            StdoutReader::Collect,
            None,
        )
    }

    #[allow(unsafe_code)] // libc: prctl, so the binary dies with the test
    fn spawn_reading(
        dir: TempDir,
        config_path: PathBuf,
        args: &[String],
        expected: Expected,
        bootstrap_token: bool,
        stdout_reader: StdoutReader,
        log_filter: Option<&str>,
    ) -> Palisade {
        let mut command = Command::new(binary_path());
        command
            .args(args)
            .current_dir(dir.path())
            .env("NO_COLOR", "1")
            .env_remove("PALISADE_BOOTSTRAP_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if bootstrap_token {
            command.env("PALISADE_BOOTSTRAP_TOKEN", ADMIN_TOKEN);
        }
        if let Some(filter) = log_filter {
            command.env("RUST_LOG", filter);
        }
        // SAFETY: prctl is async-signal-safe; it makes the kernel kill palisade if this test
        // process dies without running Drop (a timeout kill, an abort).
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = command.spawn().expect("spawn the palisade binary");
        let capture = Arc::new(Capture::default());
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let unread_stdout = match stdout_reader {
            StdoutReader::Collect => {
                collect_lines(stdout, capture.clone(), |c| &mut c.stdout);
                None
            }
            StdoutReader::Unread => Some(stdout),
        };
        collect_lines(stderr, capture.clone(), |c| &mut c.stderr);

        let mut palisade = Palisade {
            child,
            dir,
            config_path,
            listeners: Listeners::default(),
            capture,
            args: args.to_vec(),
            expected,
            bootstrap_token,
            log_filter: log_filter.map(str::to_owned),
            _unread_stdout: unread_stdout,
        };
        palisade.wait_for_listeners(expected);
        palisade
    }

    fn wait_for_listeners(&mut self, expected: Expected) {
        let deadline = Instant::now() + expected.within;
        loop {
            {
                let lines = self.capture.lines.lock().expect("capture lock");
                let mut found = Listeners::default();
                for line in &lines.stderr {
                    if let Some((kind, addr)) = parse_listening(line) {
                        match kind.as_str() {
                            "http" => found.http.push(addr),
                            "https" => found.https.push(addr),
                            "admin" => found.admin.push(addr),
                            _ => {}
                        }
                    }
                }
                if found.http.len() >= expected.http
                    && found.https.len() >= expected.https
                    && found.admin.len() >= expected.admin
                {
                    self.listeners = found;
                    return;
                }
                let now = Instant::now();
                if now < deadline {
                    let _unused = self
                        .capture
                        .changed
                        .wait_timeout(lines, Duration::from_millis(50).min(deadline - now))
                        .expect("capture lock");
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                // Give the reader threads a moment to drain the pipes before reporting.
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "palisade exited with {status} before announcing its listeners \
                     (expected {expected:?})\n{}",
                    self.output_report()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "palisade did not announce its listeners (expected {expected:?}, as \
                     `listening kind=http|https|admin addr=IP:PORT` on stderr) within {:?}\n{}",
                    expected.within,
                    self.output_report()
                );
            }
        }
    }

    /// Everything printed so far, for failure messages.
    fn output_report(&self) -> String {
        format!(
            "--- palisade stderr ---\n{}\n--- palisade stdout ---\n{}\n---",
            self.stderr_text(),
            self.access_log_lines().join("\n")
        )
    }

    /// The first cleartext (HTTP/1.1 + h2c) listener.
    pub fn http_addr(&self) -> SocketAddr {
        *self
            .listeners
            .http
            .first()
            .expect("config has no `listen` address")
    }

    /// The first TLS listener.
    pub fn https_addr(&self) -> SocketAddr {
        *self
            .listeners
            .https
            .first()
            .expect("config has no `listen_tls` address")
    }

    /// The admin listener (`/metrics`, `/healthz`).
    pub fn admin_addr(&self) -> SocketAddr {
        *self
            .listeners
            .admin
            .first()
            .expect("config has no `admin` address")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stdout lines so far: with `access_log = "stdout"`, one JSON object per request.
    pub fn access_log_lines(&self) -> Vec<String> {
        self.capture
            .lines
            .lock()
            .expect("capture lock")
            .stdout
            .clone()
    }

    /// The access log lines that parse as JSON objects.
    pub fn access_log_entries(&self) -> Vec<serde_json::Value> {
        self.access_log_lines()
            .iter()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|value| value.is_object())
            .collect()
    }

    /// Stderr so far, lines joined with `\n`, ANSI colours removed.
    pub fn stderr_text(&self) -> String {
        let lines = self.capture.lines.lock().expect("capture lock");
        lines
            .stderr
            .iter()
            .map(|line| strip_ansi(line))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits up to `timeout` for stderr to contain a line for which `pred` holds; returns it.
    pub fn wait_for_stderr(
        &self,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let mut lines = self.capture.lines.lock().expect("capture lock");
        loop {
            if let Some(line) = lines.stderr.iter().map(|l| strip_ansi(l)).find(|l| pred(l)) {
                return Some(line);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            lines = self
                .capture
                .changed
                .wait_timeout(lines, deadline - now)
                .expect("capture lock")
                .0;
        }
    }

    /// The config file the process was started with.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The temp dir holding the config and the data dir.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Replaces the config file (atomically, by rename) with `config_toml`, completed as in
    /// [`Palisade::start`]. Palisade only sees it after [`Palisade::sighup`].
    pub fn rewrite_config(&self, config_toml: &str) {
        write_config(
            &self.config_path,
            &with_harness_defaults(config_toml, &self.dir.path().join("data")),
        );
    }

    /// Asks palisade to reload its config.
    pub fn sighup(&self) {
        self.signal(libc::SIGHUP);
    }

    /// Asks palisade to reopen its access log file (after logrotate renamed it).
    pub fn sigusr1(&self) {
        self.signal(libc::SIGUSR1);
    }

    /// Asks palisade to shut down gracefully.
    pub fn sigterm(&self) {
        self.signal(libc::SIGTERM);
    }

    #[allow(unsafe_code)] // libc: kill(2): std signals only SIGKILL
    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.pid()).expect("pid fits pid_t");
        // SAFETY: kill(2) with a pid we spawned and still own (not yet reaped by wait).
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(
            rc,
            0,
            "kill({pid}, {signal}) failed: {}",
            std::io::Error::last_os_error()
        );
    }

    /// `SIGSTOP`: the process hangs (its sockets stay open, nothing answers) until
    /// [`Palisade::resume`].
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// `SIGCONT` after [`Palisade::pause`].
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    /// `kill -9`, then the same command again on the same directory (data, config): a crash
    /// and a restart. Listener addresses on port 0 change; read them again.
    pub fn kill_and_restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let placeholder = tempfile::tempdir().expect("temp dir");
        let dir = std::mem::replace(&mut self.dir, placeholder);
        let args = self.args.clone();
        let log_filter = self.log_filter.clone();
        *self = Self::spawn_reading(
            dir,
            self.config_path.clone(),
            &args,
            self.expected,
            self.bootstrap_token,
            StdoutReader::Collect,
            log_filter.as_deref(),
        );
    }

    /// Waits up to `timeout` for the process to exit; `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait on palisade") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Resident set size of the process in KiB (`VmRSS` in `/proc/PID/status`).
    pub fn rss_kib(&self) -> u64 {
        rss_kib_of(self.pid()).expect("read VmRSS of palisade: is it still running?")
    }

    /// Starts sampling the process's RSS every 20 ms on a background thread.
    pub fn sample_rss(&self) -> RssSampler {
        RssSampler::start(self.pid())
    }
}

impl Drop for Palisade {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        if std::thread::panicking() {
            // Shown by the test runner next to the failure: what the proxy had to say.
            std::thread::sleep(Duration::from_millis(50));
            eprintln!("{}", self.output_report());
        }
    }
}

/// The peak RSS of a process, sampled on a background thread until [`RssSampler::finish`].
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<u64>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = 0;
            while !stop_flag.load(Ordering::Relaxed) {
                if let Some(kib) = rss_kib_of(pid) {
                    peak = peak.max(kib);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if let Some(kib) = rss_kib_of(pid) {
                peak = peak.max(kib);
            }
            peak
        });
        RssSampler { stop, thread }
    }

    /// Stops sampling; returns the highest RSS seen, in KiB.
    pub fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("rss sampler thread")
    }
}

fn rss_kib_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

fn write_config(path: &Path, text: &str) {
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, text).expect("write config");
    std::fs::rename(&tmp, path).expect("move config into place");
}

/// Adds what every test config needs but should not have to spell out, right under `[server]`:
/// `data_dir = "<dir>"` unless the config sets one, and `admin = "127.0.0.1:0"` unless it
/// sets one, so that tests running in parallel never fight over a default admin port.
fn with_harness_defaults(config_toml: &str, data_dir: &Path) -> String {
    let server = config_toml
        .parse::<toml::Table>()
        .ok()
        .and_then(|t| t.get("server").and_then(|s| s.as_table()).cloned());
    let has = |key: &str| match &server {
        Some(server) => server.contains_key(key),
        None => config_toml.contains(key),
    };
    let mut added = Vec::new();
    if !has("data_dir") {
        added.push(format!("data_dir = \"{}\"", data_dir.display()));
    }
    if !has("admin") {
        added.push("admin = \"127.0.0.1:0\"".to_owned());
    }
    // `PALISADE_TEST_WORKERS=1` runs every proxy on the single-threaded runtime the product
    // uses for `workers = 1` (scripts/test.sh runs the black-box suite both ways).
    if let Ok(workers) = std::env::var("PALISADE_TEST_WORKERS")
        && !has("workers")
    {
        added.push(format!("workers = {}", workers.trim()));
    }
    if added.is_empty() {
        return config_toml.to_owned();
    }
    let added = added.join("\n");
    let mut out = String::with_capacity(config_toml.len() + added.len() + 1);
    let mut inserted = false;
    for l in config_toml.lines() {
        out.push_str(l);
        out.push('\n');
        if !inserted && l.trim() == "[server]" {
            out.push_str(&added);
            out.push('\n');
            inserted = true;
        }
    }
    if !inserted {
        return format!("[server]\n{added}\n\n{out}");
    }
    out
}

/// Counts the listeners a config asks for. A config that does not parse expects none, so the
/// startup wait reports whatever palisade said about it.
fn expected_listeners(config_toml: &str) -> Expected {
    let Ok(table) = config_toml.parse::<toml::Table>() else {
        return Expected::default();
    };
    let Some(server) = table.get("server").and_then(|s| s.as_table()) else {
        return Expected::default();
    };
    let count = |key: &str| {
        server
            .get(key)
            .and_then(|v| v.as_array())
            .map_or(0, |a| a.len())
    };
    Expected {
        http: count("listen"),
        https: count("listen_tls"),
        admin: usize::from(server.get("admin").is_some()),
        within: STARTUP_TIMEOUT,
    }
}

/// Parses `... listening kind=http addr=127.0.0.1:1234 ...` (tracing's key=value style).
fn parse_listening(line: &str) -> Option<(String, SocketAddr)> {
    let line = strip_ansi(line);
    if !line.contains("listening") {
        return None;
    }
    let kind = field(&line, "kind=")?;
    let addr = field(&line, "addr=")?.parse().ok()?;
    Some((kind.to_owned(), addr))
}

fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(key)? + key.len();
    let rest = &line[start..];
    let end = rest
        .find(|c: char| c.is_whitespace() || c == ',' || c == '}')
        .unwrap_or(rest.len());
    Some(rest[..end].trim_matches('"'))
}

/// Removes ANSI escape sequences (`ESC [ ... letter`), in case the logger colours its output.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn collect_lines(
    stream: impl Read + Send + 'static,
    capture: Arc<Capture>,
    pick: fn(&mut Captured) -> &mut Vec<String>,
) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf)
                        .trim_end_matches(['\r', '\n'])
                        .to_owned();
                    let mut lines = capture.lines.lock().expect("capture lock");
                    pick(&mut lines).push(line);
                    capture.changed.notify_all();
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_coloured_listening_lines() {
        let plain = "2026-01-01T00:00:00Z  INFO palisade: listening kind=https addr=127.0.0.1:4433";
        assert_eq!(
            parse_listening(plain),
            Some(("https".to_owned(), "127.0.0.1:4433".parse().unwrap()))
        );
        let coloured = "\u{1b}[32m INFO\u{1b}[0m listening \u{1b}[3mkind\u{1b}[0m\u{1b}[2m=\u{1b}[0madmin \u{1b}[3maddr\u{1b}[0m\u{1b}[2m=\u{1b}[0m127.0.0.1:9000";
        assert_eq!(
            parse_listening(coloured),
            Some(("admin".to_owned(), "127.0.0.1:9000".parse().unwrap()))
        );
        assert_eq!(parse_listening("started kind=http addr=127.0.0.1:1"), None);
    }

    #[test]
    fn data_dir_and_admin_go_under_server_table_only_when_missing() {
        let out = with_harness_defaults("[server]\nlisten = []\n", Path::new("/tmp/x"));
        assert_eq!(
            out,
            "[server]\ndata_dir = \"/tmp/x\"\nadmin = \"127.0.0.1:0\"\nlisten = []\n"
        );
        let kept = "[server]\ndata_dir = \"/d\"\nadmin = \"127.0.0.1:9\"\n";
        assert_eq!(with_harness_defaults(kept, Path::new("/tmp/x")), kept);
    }

    #[test]
    fn counts_listeners_the_config_asks_for() {
        let expected = expected_listeners(
            "[server]\nlisten = [\"127.0.0.1:0\", \"127.0.0.1:0\"]\nlisten_tls = [\"127.0.0.1:0\"]\nadmin = \"127.0.0.1:0\"\n",
        );
        assert_eq!((expected.http, expected.https, expected.admin), (2, 1, 1));
    }
}
