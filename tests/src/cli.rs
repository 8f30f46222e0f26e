//! The `palisade` command line as an operator types it against a running instance: the
//! admin API's URL in `PALISADE_ADMIN_URL` and a token in `PALISADE_TOKEN`, as a script
//! would set them.

use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::palisade::{ADMIN_TOKEN, Palisade, binary_path};

/// What one CLI run printed, and how it exited.
pub struct Run {
    pub args: String,
    pub output: Output,
}

impl Run {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    pub fn succeeded(&self) -> bool {
        self.output.status.success()
    }

    /// Panics unless the command exited 0; returns its stdout.
    pub fn ok(&self) -> String {
        assert!(
            self.succeeded(),
            "`palisade {}` failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
            self.args,
            self.output.status,
            self.stdout(),
            self.stderr()
        );
        self.stdout()
    }

    /// Panics unless the command exited non-zero; returns its stderr.
    pub fn refused(&self) -> String {
        assert!(
            !self.succeeded(),
            "`palisade {}` succeeded, it should not have:\n{}",
            self.args,
            self.stdout()
        );
        assert_eq!(self.output.status.code(), Some(1), "{}", self.stderr());
        self.stderr()
    }

    pub fn json(&self) -> Value {
        let stdout = self.ok();
        serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("`palisade {}` printed no JSON ({e}):\n{stdout}", self.args))
    }
}

/// `palisade ARGS` against `proxy`'s admin API with `token` (none: no token at all).
pub fn palisade_as(proxy: &Palisade, token: Option<&str>, args: &[&str]) -> Run {
    let mut command = Command::new(binary_path());
    command
        .args(args)
        .current_dir(proxy.dir())
        .env(
            "PALISADE_ADMIN_URL",
            format!("http://{}", proxy.admin_addr()),
        )
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    match token {
        Some(token) => command.env("PALISADE_TOKEN", token),
        None => command.env_remove("PALISADE_TOKEN"),
    };
    Run {
        args: args.join(" "),
        output: command.output().expect("run the palisade CLI"),
    }
}

/// `palisade ARGS` with the suite's admin token.
pub fn palisade(proxy: &Palisade, args: &[&str]) -> Run {
    palisade_as(proxy, Some(ADMIN_TOKEN), args)
}
