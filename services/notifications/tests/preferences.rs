//! A person's preferences are changed by the person (their token's verified e-mail) or by
//! the programme (the national team, a project lead of the territory); any other member of
//! the territory gets NOT_FOUND, exactly as for a recipient that does not exist, and changes
//! nothing.

mod common;

use std::time::Duration;

use tde_notifications::testing::SmtpServer;
use tde_proto::notifications::v1 as pb;
use tde_proto::notifications::v1::notification_service_client::NotificationServiceClient;
use tde_runtime::auth::{Role, TokenSpec};
use tde_runtime::testing::{Topology, channel_as};

use common::App;

async fn update(
    app: &App,
    spec: &TokenSpec,
    territory: &str,
    email: &str,
    reminders: bool,
) -> Result<pb::UpdateRecipientPreferencesResponse, tonic::Status> {
    let channel = channel_as(app.platform.local_addr, spec).await;
    NotificationServiceClient::new(channel)
        .update_recipient_preferences(pb::UpdateRecipientPreferencesRequest {
            territory_id: territory.into(),
            email: email.into(),
            reminders: Some(reminders),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner())
}

async fn reminders_of(app: &App, territory: &str, email: &str) -> bool {
    app.api()
        .list_recipients(pb::ListRecipientsRequest {
            territory_id: territory.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .recipients
        .into_iter()
        .find(|r| r.email == email)
        .expect("recipient")
        .reminders
}

#[tokio::test]
async fn only_the_person_or_the_programme_changes_preferences() {
    let smtp = SmtpServer::start();
    let app = App::start(Topology::Sqlite, &smtp).await;
    let territory = uuid::Uuid::now_v7().to_string();
    let other_territory = uuid::Uuid::now_v7().to_string();
    app.roster(
        &territory,
        "Saint-Étienne",
        "Europe/Paris",
        &[
            ("Delphine", "delphine@mairie.fr"),
            ("Paul", "paul@mairie.fr"),
        ],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let member = |email: Option<&str>| {
        let spec = TokenSpec::new(Role::TerritoryMember, "elu").territory(&territory);
        match email {
            Some(e) => spec.email(e),
            None => spec,
        }
    };

    // Another member of the territory, with or without an e-mail claim: NOT_FOUND, as for
    // an address that is not a recipient; nothing changes.
    for spec in [member(Some("paul@mairie.fr")), member(None)] {
        let refused = update(&app, &spec, &territory, "delphine@mairie.fr", false)
            .await
            .unwrap_err();
        let missing = update(&app, &spec, &territory, "nobody@mairie.fr", false)
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::NotFound);
        assert_eq!(refused.code(), missing.code());
        assert_eq!(refused.message(), missing.message(), "indistinguishable");
        assert!(reminders_of(&app, &territory, "delphine@mairie.fr").await);
    }
    // A project lead of another territory does not see this one.
    let elsewhere = TokenSpec::new(Role::ProjectLead, "cdp").territory(&other_territory);
    let refused = update(&app, &elsewhere, &territory, "delphine@mairie.fr", false)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::NotFound);
    assert!(reminders_of(&app, &territory, "delphine@mairie.fr").await);

    // The person herself (her address as the token gives it, any case).
    update(
        &app,
        &member(Some("Delphine@Mairie.fr")),
        &territory,
        "delphine@mairie.fr",
        false,
    )
    .await
    .expect("the person changes her own preferences");
    assert!(!reminders_of(&app, &territory, "delphine@mairie.fr").await);
    // A project lead of the territory, and the national team.
    let lead = TokenSpec::new(Role::ProjectLead, "cdp").territory(&territory);
    update(&app, &lead, &territory, "delphine@mairie.fr", true)
        .await
        .expect("a project lead of the territory");
    assert!(reminders_of(&app, &territory, "delphine@mairie.fr").await);
    let national = TokenSpec::new(Role::National, "equipe-nationale");
    update(&app, &national, &territory, "paul@mairie.fr", false)
        .await
        .expect("the national team");
    assert!(!reminders_of(&app, &territory, "paul@mairie.fr").await);
}

#[tokio::test]
async fn free_text_is_bounded_and_without_control_characters() {
    let smtp = SmtpServer::start();
    let app = App::start(Topology::Sqlite, &smtp).await;
    let territory = uuid::Uuid::now_v7().to_string();
    for (request, field) in [
        (
            pb::UpdateRecipientPreferencesRequest {
                territory_id: territory.clone(),
                email: "a@x.fr\r\nBcc: b@x.fr".into(),
                ..Default::default()
            },
            "email",
        ),
        (
            pb::UpdateRecipientPreferencesRequest {
                territory_id: territory.clone(),
                email: "a@x.fr".into(),
                webhook_url: format!("https://hooks.example.fr/{}", "x".repeat(3_000)),
                ..Default::default()
            },
            "webhook_url",
        ),
        (
            pb::UpdateRecipientPreferencesRequest {
                territory_id: territory.clone(),
                email: "a@x.fr".into(),
                language: "fr\u{0}".into(),
                ..Default::default()
            },
            "language",
        ),
    ] {
        let refused = app
            .api()
            .update_recipient_preferences(request)
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{field}");
        let details = tonic_types::StatusExt::get_error_details(&refused);
        let violations = details.bad_request().expect("field violations");
        assert!(
            violations.field_violations.iter().any(|f| f.field == field),
            "{field}: {violations:?}"
        );
    }
    let refused = app
        .api()
        .set_reminder_time(pb::SetReminderTimeRequest {
            territory_id: territory.clone(),
            local_time: "09:00\n".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
}
