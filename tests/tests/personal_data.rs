//! Personal data never reaches the logs: a whole scenario runs with every log at the most
//! verbose level, captured, and none of the e-mails or phone numbers it used appears.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use tde::platform::{self, Role};
use tde_runtime::config::Settings;
use tde_runtime::testing::channel;
use tracing_subscriber::fmt::MakeWriter;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn no_personal_data_in_logs_at_trace_level() {
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(logs.clone())
        .json()
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let settings = platform::dev_settings(
        Settings::default(),
        dir.path(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .unwrap();
    let running = platform::start(settings, Role::ALL).await.unwrap();
    let t = common::quickstart(channel(running.local_addr).await).await;
    assert!(!t.id.is_empty());
    running.shutdown().await.unwrap();

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(text.contains("territory registered"), "logs were captured");
    for secret in [
        common::EMAIL,
        "delphine",
        "Delphine Martin",
        common::PHONE_E164,
        "698765432",
        "98 76 54 32",
    ] {
        assert!(
            !text.to_lowercase().contains(&secret.to_lowercase()),
            "{secret} leaked into the logs"
        );
    }
}
