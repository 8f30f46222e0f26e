//! Headless Chromium driven through chromedriver (WebDriver, over plain http): a real browser
//! for the tests that need one (the challenge page solved in a browser, the fingerprints of a
//! browser's TLS and HTTP/2 stacks).
//!
//! Needs `chromium` and `chromedriver` (Debian: `apt-get install chromium chromium-driver`,
//! which scripts/test.sh does when they are missing). Without them these tests fail, saying so.

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::free_port;

const INSTALL: &str = "apt-get install -y chromium chromium-driver (scripts/test.sh installs them)";

/// chromedriver on a port of its own, in its own process group with the Chromium it starts:
/// dropping it kills the group, also when a test fails halfway. The browser's profile and
/// temp files live in a temp dir that goes with it.
pub struct Driver {
    child: Child,
    port: u16,
    chromium: PathBuf,
    dir: TempDir,
}

impl Driver {
    /// Starts chromedriver on a free port and waits (up to 10 s) until it listens; panics,
    /// saying how to install them, when chromium or chromedriver is missing.
    pub fn start() -> Driver {
        let chromium = find_program("chromium")
            .unwrap_or_else(|| panic!("chromium is not installed: {INSTALL}"));
        let chromedriver = find_program("chromedriver")
            .unwrap_or_else(|| panic!("chromedriver is not installed: {INSTALL}"));
        let port = free_port();
        let dir = tempfile::tempdir().expect("temp dir for the browser");
        let child = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            // Chromium leaves `org.chromium.*` dirs in $TMPDIR when it is killed.
            .env("TMPDIR", dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", chromedriver.display()));
        let driver = Driver {
            child,
            port,
            chromium,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on port {port} within 10 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        driver
    }

    /// A new headless Chromium that resolves blog.test to 127.0.0.1 and accepts the test's
    /// self-made certificates.
    pub async fn session(&self) -> Client {
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities.insert("acceptInsecureCerts".into(), Value::Bool(true));
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": self.chromium,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--ignore-certificate-errors",
                    "--host-resolver-rules=MAP blog.test 127.0.0.1",
                    format!("--user-data-dir={}", self.dir.path().join("profile").display()),
                ],
            }),
        );
        ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .unwrap_or_else(|e| panic!("start headless chromium through chromedriver: {e}"))
    }
}

impl Drop for Driver {
    #[allow(unsafe_code)] // libc: kill(2) on a process group, which std cannot
    fn drop(&mut self) {
        if let Ok(group) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill(2) on the process group of a child we spawned with `process_group(0)`
            // and have not reaped, so the group id is still ours.
            unsafe { libc::kill(-group, libc::SIGKILL) };
        }
        let _ = self.child.wait();
    }
}

/// `name`'s path in `$PATH`, if it is there.
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
