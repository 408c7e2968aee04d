//! `dripline` as a user runs it: the real binary in a child process, its log
//! read line by line as it comes, and plain HTTP/1.1 to its listeners.

use std::io::{BufRead as _, Read as _, Write as _};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use crate::dripline_binary;

/// A running `dripline up` (or `dripline worker`), killed when dropped.
pub struct Up {
    /// The child process.
    pub child: Child,
    lines: Receiver<String>,
}

impl Up {
    /// Starts `dripline up` in `dir` on free ports (`--listen` and
    /// `--gateway-listen` on port 0), with `args` and `env` besides.
    pub fn start(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let listeners = [
            "up",
            "--listen",
            "127.0.0.1:0",
            "--gateway-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ];
        Self::spawn(dir, &[&listeners[..], args].concat(), env)
    }

    /// Starts `dripline up` on the deployment root that
    /// [`crate::deployment_root`] made in `dir` (data in `dir/data`), with the
    /// repository's `spin.toml`, the test secrets of every source the gateway
    /// serves, and the clock `speed` times the wall clock's.
    pub fn deployment(dir: &Path, speed: &str) -> Self {
        let spin = crate::repo_root().join("spin.toml");
        let spin = spin.to_string_lossy();
        Self::start(
            dir,
            &[
                "--clock-speed",
                speed,
                "--data",
                "data",
                "--components",
                "components",
                "--spin",
                &spin,
                "--root",
                ".",
            ],
            &[
                (
                    "SPIN_VARIABLE_SHOPIFY_SECRET",
                    crate::gateway::SHOPIFY_SECRET,
                ),
                ("SPIN_VARIABLE_TRACK_WRITE_KEY", crate::gateway::TRACK_KEY),
                (
                    "SPIN_VARIABLE_TYPEFORM_SECRET",
                    crate::gateway::TYPEFORM_SECRET,
                ),
                ("SPIN_VARIABLE_TALLY_SECRET", crate::gateway::TALLY_SECRET),
            ],
        )
    }

    /// Starts `dripline worker` in `dir` with `args` and `env`.
    pub fn worker(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::spawn(dir, &[&["worker"][..], args].concat(), env)
    }

    fn spawn(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(dripline_binary())
            .args(args)
            .envs(env.iter().copied())
            .env("RUST_LOG", "info")
            .current_dir(dir)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting dripline up: {e}"));
        let Some(stdout) = child.stdout.take() else {
            panic!("dripline up has no stdout");
        };
        let (lines, received) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines: received,
        }
    }

    /// The address after `marker` in the first log line that has it (the
    /// log may be coloured: the address ends where its characters do).
    pub fn address_after(&self, marker: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(120);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("dripline up stopped logging before `{marker}`: {e}"));
            if let Some((_, rest)) = line.split_once(marker) {
                return rest
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                    .collect();
            }
        }
        panic!("no `{marker}` in the log within two minutes");
    }

    /// The log lines from here to the first that has `marker`, that one
    /// included.
    pub fn lines_until(&self, marker: &str) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("dripline stopped logging before `{marker}`: {e}"));
            let found = line.contains(marker);
            seen.push(line);
            if found {
                return seen;
            }
        }
        panic!("no `{marker}` in the log within a minute");
    }

    /// The public listener's address (health, tracking), once it serves.
    pub fn admin(&self) -> String {
        self.address_after("dripline is up on http://")
    }

    /// The admin API's address. It is logged before the public listener's:
    /// ask for it first.
    pub fn api(&self) -> String {
        self.address_after("the admin API is up on http://")
    }

    /// The webhook gateway's address, once it serves.
    pub fn gateway(&self) -> String {
        self.address_after("the webhook gateway is up on http://")
    }
}

impl Up {
    /// Sends SIGTERM, as systemd, Docker and Kubernetes stop a service.
    pub fn terminate(&self) {
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap_or_else(|e| panic!("kill: {e}"));
        assert!(sent.success(), "kill -TERM failed");
    }

    /// Waits up to `within` for the process to exit; its status.
    pub fn exited_within(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self
                .child
                .try_wait()
                .unwrap_or_else(|e| panic!("waiting for dripline up: {e}"))
            {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "dripline up still runs {within:?} later"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request over a fresh connection: `head` is the request line and
/// headers without the final blank line; returns (status, body).
pub fn http(address: &str, head: &str, body: &[u8]) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(address)
        .unwrap_or_else(|e| panic!("connecting to {address}: {e}"));
    let request = format!(
        "{head}\r\nHost: {address}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut answer = String::new();
    let sent = stream
        .write_all(request.as_bytes())
        .and_then(|()| stream.write_all(body))
        .and_then(|()| stream.read_to_string(&mut answer));
    sent.unwrap_or_else(|e| panic!("HTTP to {address}: {e}"));
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (status, body)
}
