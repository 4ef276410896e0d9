//! Never over budget: 200 approvals at once against one envelope, on PostgreSQL through gRPC,
//! asking twice what the envelope holds.

mod common;

use std::time::Instant;

use chrono::{NaiveDate, Utc};
use futures::future::join_all;
use tde_proto::subsidies::v1 as pb;
use tde_runtime::testing::Topology;
use tde_subsidies::domain::subsidy::{LegalAct, LegalActKind, ProposalInput, Subsidy};
use tde_subsidies::storage;
use tonic::Code;

use common::{App, SIRET, precondition};

const APPROVALS: usize = 200;

/// Requested subsidies, each with a proposal by alice: what 200 project leads would have
/// prepared (written directly, so that the test measures the approvals alone).
async fn proposed(app: &App, territory: &str, amounts: &[i64]) -> Vec<Subsidy> {
    let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date");
    let mut out = Vec::new();
    for (i, amount) in amounts.iter().enumerate() {
        let mut s = Subsidy::request(
            uuid::Uuid::now_v7().to_string(),
            uuid::Uuid::now_v7().to_string(),
            1 + (i % 3) as u8,
            0,
            (territory, "Saint-Étienne", "84"),
            (d("2027-01-01"), d("2028-01-01")),
            1,
            *amount,
            Utc::now(),
        );
        s.propose(
            ProposalInput {
                amount_cents: *amount,
                legal_act: Some(LegalAct {
                    kind: LegalActKind::Order,
                    reference: format!("ARR-2027-{i:03}"),
                    date: d("2027-02-01"),
                }),
                beneficiary_siret: SIRET,
                budget_year: 2027,
                commitment_number: "",
                comment: "",
            },
            "alice",
            Utc::now(),
        )
        .expect("proposal");
        storage::insert_subsidy(&app.ctx().db, &s)
            .await
            .expect("inserted");
        out.push(s);
    }
    out
}

#[tokio::test]
async fn two_hundred_concurrent_approvals_never_exceed_the_envelope() {
    let app = App::start(Topology::Postgres).await;
    let territory = app.territory("Saint-Étienne", "84").await;
    // Amounts of different sizes, so that which ones fit depends on the order they come in.
    let amounts: Vec<i64> = (0..APPROVALS)
        .map(|i| 1_000_000 + (i as i64 % 7) * 250_000 + i as i64 % 3)
        .collect();
    let asked: i64 = amounts.iter().sum();
    let envelope_cents = asked / 2;
    let envelope = app.envelope(envelope_cents).await;
    let subsidies = proposed(&app, &territory, &amounts).await;

    let started = Instant::now();
    let calls = subsidies.iter().map(|s| {
        let mut client = app.approvals();
        let id = s.id.clone();
        async move {
            let t = Instant::now();
            let result = client
                .approve_decision(pb::ApproveDecisionRequest {
                    id,
                    ..Default::default()
                })
                .await;
            (result, t.elapsed())
        }
    });
    let results = join_all(calls).await;
    let elapsed = started.elapsed();

    let mut granted = 0i64;
    let mut successes = 0;
    let mut refused = Vec::new();
    let mut latencies: Vec<_> = results.iter().map(|(_, t)| *t).collect();
    for ((result, _), s) in results.into_iter().zip(&subsidies) {
        match result {
            Ok(r) => {
                let approved = r.into_inner().subsidy.expect("subsidy");
                assert_eq!(approved.granted_cents, s.requested_cents);
                granted += approved.granted_cents;
                successes += 1;
            }
            Err(status) => {
                assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
                let (kind, description) = precondition(&status);
                assert_eq!(kind, "OVER_BUDGET");
                assert!(
                    description.contains(" left (") && description.contains("this decision needs"),
                    "{description}"
                );
                refused.push((s.requested_cents, description));
            }
        }
    }
    let envelope = app
        .envelopes()
        .get_envelope(pb::GetEnvelopeRequest { id: envelope.id })
        .await
        .expect("envelope")
        .into_inner()
        .envelope
        .expect("envelope");
    // Never over budget, and what is committed is exactly what was granted.
    assert!(envelope.committed_cents <= envelope_cents);
    assert_eq!(envelope.committed_cents, granted);
    assert_eq!(successes + refused.len(), APPROVALS);
    assert!(successes > 0 && !refused.is_empty());
    // Exactly the approvals that fit succeeded: every refused one needed more than what is
    // left even now (what is left only shrank while they came).
    let left = envelope.available_cents;
    for (amount, description) in &refused {
        assert!(
            *amount > left,
            "{amount} refused with {left} left: {description}"
        );
    }
    // Each refusal names what was left when it came: never less than what is left now.
    for (_, description) in &refused {
        let cents: i64 = description
            .split(" left (")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no amount left in {description:?}"));
        assert!(cents >= left && cents <= envelope_cents, "{description}");
    }
    // The ledger agrees.
    let report = app
        .ledger()
        .reconcile(pb::ReconcileRequest {})
        .await
        .expect("reconciled")
        .into_inner();
    assert!(
        report.discrepancies.is_empty(),
        "{:?}",
        report.discrepancies
    );
    assert_eq!(report.entries_read, successes as i64, "one commitment each");

    latencies.sort();
    let p99 = latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)];
    eprintln!(
        "{APPROVALS} concurrent approvals: {successes} committed, {} refused, {:.0} approvals/s, p99 {:?}",
        refused.len(),
        APPROVALS as f64 / elapsed.as_secs_f64(),
        p99
    );
}
