//! A real `redis-server` for the cluster tests: started on a free loopback port with nothing
//! persisted, stopped and started again on the same port (an outage), killed on drop. And a
//! minimal RESP client, binary-safe, for what a test writes or reads behind Palisade's back
//! (a forged message, a trimmed stream).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `redis-server` (Debian's package; `scripts/test.sh` installs it when missing).
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts one on a free port and waits until it answers PING.
    pub fn start() -> RedisServer {
        let mut server = RedisServer {
            child: None,
            port: crate::free_port(),
            dir: tempfile::tempdir().expect("temp dir for redis"),
        };
        server.start_again();
        server
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills it (`SIGKILL`): an outage. Nothing was persisted, so it comes back empty.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port (after [`RedisServer::kill`]).
    #[allow(unsafe_code)] // libc: prctl, so redis dies with the test
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "redis is running already");
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: prctl is async-signal-safe; the kernel kills redis if the test dies.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command.spawn().unwrap_or_else(|e| {
            panic!("cannot run redis-server ({e}): install Debian's redis-server (scripts/test.sh does)")
        });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Reply::Status(s)) = self.try_command(&[b"PING"])
                && s == "PONG"
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs one command; panics if Redis cannot be reached.
    pub fn command(&self, args: &[&[u8]]) -> Reply {
        self.try_command(args)
            .unwrap_or_else(|e| panic!("redis {:?}: {e}", String::from_utf8_lossy(args[0])))
    }

    fn try_command(&self, args: &[&[u8]]) -> std::io::Result<Reply> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut request = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            request.extend_from_slice(arg);
            request.extend_from_slice(b"\r\n");
        }
        stream.write_all(&request)?;
        read_reply(&mut BufReader::new(stream))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A RESP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`
    Status(String),
    /// `-ERR ...`
    Error(String),
    /// `:N`
    Integer(i64),
    /// `$N` bytes, or `None` for a null.
    Bulk(Option<Vec<u8>>),
    /// `*N` replies, or `None` for a null array.
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The bytes of a bulk reply.
    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Reply::Bulk(Some(b)) => Some(b),
            _ => None,
        }
    }

    /// The items of an array reply (empty for anything else).
    pub fn items(&self) -> &[Reply] {
        match self {
            Reply::Array(Some(items)) => items,
            _ => &[],
        }
    }
}

fn read_reply(reader: &mut BufReader<TcpStream>) -> std::io::Result<Reply> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let line = line.trim_end_matches("\r\n");
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "not RESP");
    let (kind, rest) = line.split_at_checked(1).ok_or_else(bad)?;
    let number = || rest.parse::<i64>().map_err(|_| bad());
    Ok(match kind {
        "+" => Reply::Status(rest.to_string()),
        "-" => Reply::Error(rest.to_string()),
        ":" => Reply::Integer(number()?),
        "$" => match number()? {
            n if n < 0 => Reply::Bulk(None),
            n => {
                let mut bytes = vec![0; n as usize + 2];
                reader.read_exact(&mut bytes)?;
                bytes.truncate(n as usize);
                Reply::Bulk(Some(bytes))
            }
        },
        "*" => match number()? {
            n if n < 0 => Reply::Array(None),
            n => Reply::Array(Some(
                (0..n)
                    .map(|_| read_reply(reader))
                    .collect::<std::io::Result<_>>()?,
            )),
        },
        _ => return Err(bad()),
    })
}
