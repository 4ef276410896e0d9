//! Subsidy decisions and payments reach the territory's privileged contact, once, as short
//! French e-mails (and nobody else of its roster).

mod common;

use tde_notifications::testing::SmtpServer;
use tde_proto::subsidies::v1 as spb;
use tde_proto::territories::v1 as tpb;
use tde_runtime::bus::Envelope;
use tde_runtime::testing::Topology;

use common::{App, wait_for_mail};

fn event(
    app: &App,
    service: &str,
    suffix: &str,
    event_type: &str,
    message: &impl prost::Message,
) -> Envelope {
    let aggregate = uuid::Uuid::now_v7().to_string();
    app.envelope(service, suffix, event_type, &aggregate, message)
}

async fn publish(app: &App, service: &str, envelope: Envelope) {
    app.publish_envelope(service, envelope).await;
}

fn person(name: &str, email: &str) -> tpb::Person {
    tpb::Person {
        name: name.into(),
        email: email.into(),
        phone: String::new(),
        role: String::new(),
    }
}

tde_runtime::on_both_topologies!(the_privileged_contact_hears_of_the_decision_and_each_payment);

async fn the_privileged_contact_hears_of_the_decision_and_each_payment(topology: Topology) {
    let smtp = SmtpServer::start();
    let app = App::start(topology, &smtp).await;
    let territory = uuid::Uuid::now_v7().to_string();
    publish(
        &app,
        "territories",
        event(
            &app,
            "territories",
            "territory.steering_body_changed",
            "tde.territories.v1.SteeringBodyChanged",
            &tpb::SteeringBodyChanged {
                territory_id: territory.clone(),
                territory_name: "Saint-Étienne".into(),
                time_zone: "Europe/Paris".into(),
                privileged_contact: Some(person("Claire Durand", "claire@saint-etienne.fr")),
                operational_team: vec![person("Paul Agent", "paul@saint-etienne.fr")],
                steering_body: None,
            },
        ),
    )
    .await;
    let db = app.ctx().db.clone();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while tde_notifications::storage::recipients_of(&db, &territory)
        .await
        .unwrap()
        .len()
        < 2
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "roster never arrived"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let subsidy = spb::SubsidyFacts {
        subsidy_id: uuid::Uuid::now_v7().to_string(),
        territory_id: territory.clone(),
        territory_name: "Saint-Étienne".into(),
        plan_year: 1,
        requested_cents: 2_000_000,
        granted_cents: 2_000_000,
        status: spb::SubsidyStatus::Granted as i32,
        ..Default::default()
    };
    let decided = event(
        &app,
        "subsidies",
        "subsidy.decided",
        "tde.subsidies.v1.SubsidyDecided",
        &spb::SubsidyDecided {
            subsidy: Some(subsidy.clone()),
            advance_cents: 1_000_000,
            legal_act_reference: "CONV-2027-042".into(),
            ..Default::default()
        },
    );
    publish(&app, "subsidies", decided.clone()).await;
    // A redelivery sends nothing more.
    publish(&app, "subsidies", decided).await;
    let paid = event(
        &app,
        "subsidies",
        "payment.paid",
        "tde.subsidies.v1.PaymentPaid",
        &spb::PaymentPaid {
            payment: Some(spb::PaymentFacts {
                payment_id: uuid::Uuid::now_v7().to_string(),
                subsidy_id: subsidy.subsidy_id.clone(),
                territory_id: territory.clone(),
                plan_year: 1,
                kind: spb::PaymentKind::Advance as i32,
                amount_cents: 1_000_000,
                reference: "VIR-2027-1".into(),
                ..Default::default()
            }),
            paid_on: "2027-03-01".into(),
            remaining_cents: 1_000_000,
            ..Default::default()
        },
    );
    publish(&app, "subsidies", paid).await;
    wait_for_mail(&smtp, "the decision and the payment", |m| m.len() >= 2).await;
    // Let a duplicate, if any, arrive.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let got: Vec<_> = smtp.messages().iter().map(|m| common::parse(m)).collect();
    assert_eq!(
        got.len(),
        2,
        "{:?}",
        got.iter().map(|r| &r.subject).collect::<Vec<_>>()
    );
    assert!(
        got.iter().all(|m| m.to.contains("claire@saint-etienne.fr")),
        "only the privileged contact"
    );
    let decision = got
        .iter()
        .find(|m| m.subject.contains("accordée"))
        .expect("the decision");
    assert_eq!(
        decision.subject,
        "Subvention de l'année 1 accordée : 20\u{202f}000,00\u{a0}€ (Saint-Étienne)"
    );
    assert!(
        decision.text.starts_with("Bonjour Claire Durand,"),
        "{}",
        decision.text
    );
    assert!(
        decision
            .text
            .contains("une avance de 10\u{202f}000,00\u{a0}€"),
        "{}",
        decision.text
    );
    let payment = got
        .iter()
        .find(|m| m.subject.starts_with("Versement"))
        .expect("the payment");
    assert!(
        payment.text.contains("L'ANCT a versé le 1 mars 2027"),
        "{}",
        payment.text
    );
    assert!(
        payment
            .text
            .contains("le solde, 10\u{202f}000,00\u{a0}€, sera versé après"),
        "{}",
        payment.text
    );
}
