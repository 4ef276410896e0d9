//! Test support of the notifications service, for its own tests, the end-to-end tests and
//! the benchmarks (feature `testing`, never in the product): a real SMTP server, and the
//! settings that make tests quick.

use std::time::{Duration, Instant};

use tde_runtime::testing::{TestEnv, free_port};

use crate::settings::{NotificationSettings, SmtpSecurity, SmtpSettings};

/// Settings for a test: quick polling and retries, a short lease, e-mails under the test's
/// folder, and `smtp` as relay when given.
pub fn test_settings(env: &TestEnv, smtp: Option<&SmtpServer>) -> NotificationSettings {
    NotificationSettings {
        poll_interval_ms: 50,
        retry_backoff_ms: 100,
        max_backoff_ms: 1_000,
        lease_ms: 5_000,
        mail_dir: env.data_dir().join("mail"),
        smtp: smtp.map(SmtpServer::settings),
        ..NotificationSettings::default()
    }
}

/// Sets the notifications section of `env` (see `test_settings`).
pub fn configure(env: &mut TestEnv, smtp: Option<&SmtpServer>) {
    let settings = test_settings(env, smtp);
    env.settings
        .services
        .set(settings)
        .expect("test settings are valid");
}

/// The SMTP server of the tests: Python's aiosmtpd (from PyPI; `scripts/test` installs it),
/// run as a real process on a free port. It stores what it accepts in a maildir, refuses
/// recipients at `@rejected.example` (550), holds every RCPT while `pause()` is on, and
/// answers each RCPT after `delay()` (a slow relay).
pub struct SmtpServer {
    child: Option<std::process::Child>,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

const SMTP_SERVER_PY: &str = r#"
import asyncio, mailbox, os, sys
from aiosmtpd.smtp import SMTP

host, port, root = sys.argv[1], int(sys.argv[2]), sys.argv[3]
pause = os.path.join(root, "pause")
delay = os.path.join(root, "delay")

class Handler:
    def __init__(self):
        self.box = mailbox.Maildir(os.path.join(root, "mail"), create=True)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        while os.path.exists(pause):
            await asyncio.sleep(0.01)
        try:
            with open(delay) as f:
                await asyncio.sleep(float(f.read()))
        except (OSError, ValueError):
            pass
        if address.lower().endswith("@rejected.example"):
            return "550 5.1.1 <%s>: mailbox unavailable" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.box.add(envelope.original_content)
        return "250 Message accepted for delivery"

async def main():
    handler = Handler()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, enable_SMTPUTF8=True, decode_data=False), host, port)
    await server.serve_forever()

asyncio.run(main())
"#;

impl SmtpServer {
    /// Starts a server on a free port.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("server.py"), SMTP_SERVER_PY).expect("write server");
        let mut server = Self {
            child: None,
            port: free_port(),
            dir,
        };
        server.resume();
        server
    }

    /// Starts the process again on the same port and maildir (after `stop`).
    pub fn resume(&mut self) {
        let python = std::env::var("TDE_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let child = std::process::Command::new(&python)
            .arg(self.dir.path().join("server.py"))
            .arg("127.0.0.1")
            .arg(self.port.to_string())
            .arg(self.dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{python} (aiosmtpd) does not start: {e}; run scripts/test")
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "the SMTP server exited ({status}): is aiosmtpd installed? run scripts/test"
                );
            }
            assert!(Instant::now() < deadline, "the SMTP server never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the process: the port refuses connections until `resume`.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Holds (true) or releases (false) every RCPT command.
    pub fn pause(&self, on: bool) {
        let flag = self.dir.path().join("pause");
        if on {
            std::fs::write(flag, b"").expect("pause flag");
        } else {
            let _ = std::fs::remove_file(flag);
        }
    }

    /// Answers each RCPT after `delay` (zero: at once): a slow relay.
    pub fn delay(&self, delay: Duration) {
        let file = self.dir.path().join("delay");
        if delay.is_zero() {
            let _ = std::fs::remove_file(file);
        } else {
            std::fs::write(file, delay.as_secs_f64().to_string()).expect("delay file");
        }
    }

    /// The raw messages received so far.
    pub fn messages(&self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            if let Ok(entries) = std::fs::read_dir(self.dir.path().join("mail").join(sub)) {
                for entry in entries.flatten() {
                    if let Ok(bytes) = std::fs::read(entry.path()) {
                        out.push(bytes);
                    }
                }
            }
        }
        out
    }

    /// Settings of a notifications service sending through this server (plain SMTP).
    pub fn settings(&self) -> SmtpSettings {
        SmtpSettings {
            host: "127.0.0.1".into(),
            port: self.port,
            security: SmtpSecurity::Plain,
            username: None,
            password: None,
            pool_size: 4,
            timeout_ms: 5_000,
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.stop();
    }
}
