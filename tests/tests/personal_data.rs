//! Personal data never reaches the logs: a whole scenario runs with every log at the most
//! verbose level, captured, and none of the e-mails or phone numbers it used appears.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use tde::platform::{self, Role};
use tde_proto::territories::v1 as pb;
use tde_proto::territories::v1::personal_data_service_client::PersonalDataServiceClient;
use tde_proto::territories::v1::territory_service_client::TerritoryServiceClient;
use tde_runtime::config::Settings;
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
    let ch = common::dev_channel(running.local_addr, dir.path()).await;
    let t = common::quickstart(ch.clone()).await;
    assert!(!t.id.is_empty());
    // Refused calls, the right of access and the right to erasure, on the same person.
    let mut rgpd = PersonalDataServiceClient::new(ch.clone());
    let bad = rgpd
        .export_personal_data(pb::ExportPersonalDataRequest {
            email: format!("{}@", common::EMAIL),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    let export = rgpd
        .export_personal_data(pb::ExportPersonalDataRequest {
            email: common::EMAIL.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(export.records.len(), 1);
    let mut stranger = TerritoryServiceClient::new(tde_runtime::testing::with_token(
        tde_runtime::testing::raw_channel(running.local_addr).await,
        "forged.token.value",
    ));
    let refused = stranger
        .get_territory(pb::GetTerritoryRequest { id: t.id.clone() })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    rgpd.erase_personal_data(pb::ErasePersonalDataRequest {
        email: common::EMAIL.into(),
    })
    .await
    .unwrap();
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
