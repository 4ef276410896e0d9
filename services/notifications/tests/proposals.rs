//! Proposals reach the provider's contact as a French e-mail, once; an acceptance that does
//! not stand (the project lead set the provider by hand) is told to the same address, once,
//! although the event carries no address.

mod common;

use tde_notifications::testing::SmtpServer;
use tde_proto::matching::v1 as mpb;
use tde_runtime::testing::Topology;

use common::{App, wait_for_mail};

tde_runtime::on_both_topologies!(a_superseded_acceptance_is_told_to_whom_the_proposal_went);

async fn a_superseded_acceptance_is_told_to_whom_the_proposal_went(topology: Topology) {
    let smtp = SmtpServer::start();
    let app = App::start(topology, &smtp).await;
    let proposal_id = uuid::Uuid::now_v7().to_string();
    let need_id = uuid::Uuid::now_v7().to_string();
    // A proposal never e-mailed (no contact) is superseded: nobody to tell.
    let silent = uuid::Uuid::now_v7().to_string();
    let superseded = |id: &str| mpb::ProposalSuperseded {
        proposal_id: id.into(),
        need_id: need_id.clone(),
        provider_id: "provider-1".into(),
        action_provider_id: "provider-2".into(),
        supersede_time: None,
    };
    let early = app.envelope(
        "matching",
        "proposal.superseded",
        "tde.matching.v1.ProposalSuperseded",
        &silent,
        &superseded(&silent),
    );
    let silent_id = early.id.clone();
    app.publish_envelope("matching", early).await;
    let sent = app.envelope(
        "matching",
        "proposal.sent",
        "tde.matching.v1.ProposalSent",
        &proposal_id,
        &mpb::ProposalSent {
            proposal_id: proposal_id.clone(),
            need_id: need_id.clone(),
            provider_id: "provider-1".into(),
            provider_name: "Démocratie ouverte Loire".into(),
            territory_id: uuid::Uuid::now_v7().to_string(),
            territory_name: "Saint-Étienne".into(),
            action_title: "Budget participatif".into(),
            planned_start: "2027-04-01".into(),
            planned_end: "2027-04-30".into(),
            contact_email: "Contact@Prestataire.example".into(),
            budget_cents: 2_500_000,
            ..Default::default()
        },
    );
    app.publish_envelope("matching", sent).await;
    wait_for_mail(&smtp, "the proposal", |m| !m.is_empty()).await;
    let lost = app.envelope(
        "matching",
        "proposal.superseded",
        "tde.matching.v1.ProposalSuperseded",
        &proposal_id,
        &superseded(&proposal_id),
    );
    app.publish_envelope("matching", lost.clone()).await;
    // A redelivery, and the same fact published again under a new event id, tell no more.
    app.publish_envelope("matching", lost).await;
    let again = app.envelope(
        "matching",
        "proposal.superseded",
        "tde.matching.v1.ProposalSuperseded",
        &proposal_id,
        &superseded(&proposal_id),
    );
    let again_id = again.id.clone();
    app.publish_envelope("matching", again).await;
    let got = wait_for_mail(&smtp, "the superseded acceptance", |m| m.len() >= 2).await;
    let told = got
        .iter()
        .find(|m| m.subject.starts_with("Intervention non confirmée"))
        .expect("the superseded acceptance");
    assert_eq!(
        told.subject,
        "Intervention non confirmée : Budget participatif (Saint-Étienne)"
    );
    assert!(
        told.to.contains("contact@prestataire.example"),
        "{}",
        told.to
    );
    assert!(
        told.text.contains(&format!("référence {proposal_id}")),
        "{}",
        told.text
    );
    assert!(
        told.text.contains("ne vous est pas attribuée"),
        "{}",
        told.text
    );
    // Every event above was handled (the redelivery is the same id): nothing else was sent.
    for id in [&silent_id, &again_id] {
        tde_runtime::testing::wait_until_processed(&app.ctx().db, id).await;
    }
    // One row per notice, whatever the redeliveries: the dispatcher sends each row once.
    let db = &app.ctx().db;
    for notice in [
        format!("proposal-superseded-{proposal_id}"),
        format!("proposal-superseded-{silent}"),
    ] {
        let rows = tde_notifications::notices::notice_recipients(db, "proposal", &notice)
            .await
            .expect("rows");
        let expected = usize::from(notice.ends_with(proposal_id.as_str()));
        assert_eq!(rows.len(), expected, "{notice}: {rows:?}");
    }
}
