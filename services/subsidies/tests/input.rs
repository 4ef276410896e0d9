//! Bad input is INVALID_ARGUMENT naming every bad field at once, whatever the data: checked
//! before anything is read, it is never answered with the state of the data (not found, no
//! national envelope, over budget, already decided…). Région filters refuse a malformed code
//! instead of answering with an empty list.

mod common;

use tde_proto::subsidies::v1 as pb;
use tde_runtime::testing::Topology;
use tonic::Code;

use common::{App, fields};

tde_runtime::on_both_topologies!(
    a_bad_envelope_is_invalid_whatever_the_envelopes_of_its_year,
    bad_input_to_any_write_is_invalid_whatever_the_subsidy,
    region_filters_refuse_a_malformed_code,
);

/// A request and the fields it gets wrong.
type Case<R> = (&'static str, fn(&mut R), &'static [&'static str]);

/// A field of the request has a control character.
fn control(s: &mut String) {
    *s = "EJ\u{7}".into();
}

fn expect_invalid(what: &str, result: Result<(), tonic::Status>, expected: &[&str]) {
    let err = result.expect_err(what);
    assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err:?}");
    assert_eq!(fields(&err), expected, "{what}: {}", err.message());
}

async fn a_bad_envelope_is_invalid_whatever_the_envelopes_of_its_year(topology: Topology) {
    let app = App::start(topology).await;
    // 2027 has a national envelope of 10 000 €, 2031 has none.
    app.envelope(1_000_000).await;
    let request = |year: i32, region: &str, amount: i64| pb::CreateEnvelopeRequest {
        budget_year: year,
        region_code: region.into(),
        amount_cents: amount,
        advance_percent: 30,
        reason: "loi de finances".into(),
        act_reference: "LFI".into(),
        request_id: String::new(),
    };
    // Valid requests the data refuses: ALREADY_EXISTS, BEYOND_NATIONAL, NO_NATIONAL_ENVELOPE.
    let refused_by_the_data = [
        request(2027, "", 5_000),
        request(2027, "84", 2_000_000),
        request(2031, "84", 5_000),
    ];
    for r in &refused_by_the_data {
        let err = app
            .envelopes()
            .create_envelope(r.clone())
            .await
            .unwrap_err();
        assert_ne!(err.code(), Code::InvalidArgument, "{r:?}: {err:?}");
    }
    let cases: &[Case<pb::CreateEnvelopeRequest>] = &[
        ("year", |r| r.budget_year = 1999, &["budget_year"]),
        ("no year", |r| r.budget_year = 0, &["budget_year"]),
        ("région", |r| r.region_code = "8".into(), &["region_code"]),
        ("région", |r| r.region_code = "2A".into(), &["region_code"]),
        ("région", |r| r.region_code = "840".into(), &["region_code"]),
        // Well formed, but no such région in the geography.
        ("région", |r| r.region_code = "99".into(), &["region_code"]),
        ("région", |r| r.region_code = "05".into(), &["region_code"]),
        ("amount", |r| r.amount_cents = -1, &["amount_cents"]),
        (
            "amount",
            |r| r.amount_cents = 1_000_000_000_001,
            &["amount_cents"],
        ),
        ("advance", |r| r.advance_percent = 101, &["advance_percent"]),
        ("advance", |r| r.advance_percent = -1, &["advance_percent"]),
        ("reason", |r| r.reason = " ".into(), &["reason"]),
        ("act", |r| r.act_reference.clear(), &["act_reference"]),
        ("act", |r| control(&mut r.act_reference), &["act_reference"]),
        (
            "request id",
            |r| control(&mut r.request_id),
            &["request_id"],
        ),
        (
            "request id",
            |r| r.request_id = "x".repeat(129),
            &["request_id"],
        ),
        (
            "everything",
            |r| {
                r.budget_year = 1999;
                r.region_code = "x".into();
                r.amount_cents = -1;
                r.advance_percent = 300;
                r.reason.clear();
                r.act_reference.clear();
                control(&mut r.request_id);
            },
            &[
                "request_id",
                "advance_percent",
                "budget_year",
                "region_code",
                "amount_cents",
                "reason",
                "act_reference",
            ],
        ),
    ];
    for base in &refused_by_the_data {
        for (what, spoil, expected) in cases {
            let mut r = base.clone();
            spoil(&mut r);
            let result = app.envelopes().create_envelope(r.clone()).await;
            expect_invalid(&format!("{what} of {r:?}"), result.map(drop), expected);
        }
    }
    // Changing an amount: bad input is named before the envelope is looked for.
    let change = |id: &str| pb::ChangeEnvelopeAmountRequest {
        id: id.into(),
        etag: "\"999\"".into(),
        amount_cents: -1,
        reason: String::new(),
        act_reference: "DM".into(),
    };
    for id in [uuid::Uuid::now_v7().to_string(), "nope".into()] {
        let result = app.envelopes().change_envelope_amount(change(&id)).await;
        let mut expected = vec!["amount_cents", "reason"];
        if id == "nope" {
            expected.insert(0, "id");
        }
        expect_invalid(&format!("change of {id}"), result.map(drop), &expected);
    }
}

/// A subsidy granted (and its advance scheduled), one refused, and an id that exists nowhere:
/// a bad request about any of them is INVALID_ARGUMENT, never NOT_FOUND nor
/// FAILED_PRECONDITION.
async fn bad_input_to_any_write_is_invalid_whatever_the_subsidy(topology: Topology) {
    let app = App::start(topology).await;
    let territory = app.territory("Feurs", "84").await;
    app.envelope(5_000_000).await;
    let (granted_plan, refused_plan) = (
        uuid::Uuid::now_v7().to_string(),
        uuid::Uuid::now_v7().to_string(),
    );
    app.publish(app.year_submitted(&granted_plan, &territory, 1, 1, 100_000))
        .await;
    app.publish(app.year_submitted(&refused_plan, &territory, 1, 1, 100_000))
        .await;
    let granted = app.wait_for_subsidy(&granted_plan, |_| true).await;
    let refused = app.wait_for_subsidy(&refused_plan, |_| true).await;
    app.subsidies()
        .propose_decision(App::proposal(&granted, 100_000))
        .await
        .unwrap();
    let advance = app
        .approvals()
        .approve_decision(pb::ApproveDecisionRequest {
            id: granted.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .advance
        .unwrap();
    app.approvals()
        .refuse_subsidy(pb::RefuseSubsidyRequest {
            id: refused.id.clone(),
            etag: String::new(),
            reason: "hors programme".into(),
        })
        .await
        .unwrap();
    let unknown = uuid::Uuid::now_v7().to_string();
    let before = app.subsidies_of(&granted_plan).await;

    for id in [&granted.id, &refused.id, &unknown] {
        let proposal = App::proposal(&granted, 100_000);
        let proposals: &[Case<pb::ProposeDecisionRequest>] = &[
            ("no amount", |r| r.amount_cents = 0, &["amount_cents"]),
            ("no act", |r| r.legal_act = None, &["legal_act"]),
            (
                "act kind",
                |r| r.legal_act.as_mut().unwrap().kind = 0,
                &["legal_act.kind"],
            ),
            (
                "act date",
                |r| r.legal_act.as_mut().unwrap().date = "1er février".into(),
                &["legal_act.date"],
            ),
            (
                "act reference",
                |r| r.legal_act.as_mut().unwrap().reference.clear(),
                &["legal_act.reference"],
            ),
            (
                "siret",
                |r| r.beneficiary_siret = "21750001600018".into(),
                &["beneficiary_siret"],
            ),
            ("year", |r| r.budget_year = 1990, &["budget_year"]),
            (
                "commitment",
                |r| control(&mut r.commitment_number),
                &["commitment_number"],
            ),
            ("comment", |r| r.comment = "x".repeat(1_001), &["comment"]),
            (
                "everything",
                |r| {
                    r.id = "nope".into();
                    r.amount_cents = -5;
                    r.legal_act.as_mut().unwrap().kind = 0;
                    r.beneficiary_siret.clear();
                },
                &["id", "legal_act.kind", "amount_cents", "beneficiary_siret"],
            ),
        ];
        for (what, spoil, expected) in proposals {
            let mut r = proposal.clone();
            r.id = id.clone();
            spoil(&mut r);
            let result = app.subsidies().propose_decision(r).await;
            expect_invalid(
                &format!("proposal {what} on {id}"),
                result.map(drop),
                expected,
            );
        }

        let result = app
            .approvals()
            .approve_decision(pb::ApproveDecisionRequest {
                id: id.clone(),
                etag: String::new(),
                commitment_number: "x".repeat(101),
            })
            .await;
        expect_invalid("approval", result.map(drop), &["commitment_number"]);

        for reason in ["", "  ", "non\u{0}"] {
            let result = app
                .approvals()
                .refuse_subsidy(pb::RefuseSubsidyRequest {
                    id: id.clone(),
                    etag: String::new(),
                    reason: reason.into(),
                })
                .await;
            expect_invalid(
                &format!("refusal {reason:?}"),
                result.map(drop),
                &["reason"],
            );
        }

        for amount in [0, -1, 1_000_000_000_001] {
            let result = app
                .approvals()
                .decommit(pb::DecommitRequest {
                    id: id.clone(),
                    etag: String::new(),
                    amount_cents: amount,
                    reason: String::new(),
                })
                .await;
            expect_invalid(
                &format!("decommitment of {amount}"),
                result.map(drop),
                &["amount_cents", "reason"],
            );
            let result = app
                .approvals()
                .order_clawback(pb::OrderClawbackRequest {
                    id: id.clone(),
                    etag: String::new(),
                    amount_cents: amount,
                    reason: " ".into(),
                    reference: "x".repeat(101),
                })
                .await;
            expect_invalid(
                &format!("clawback of {amount}"),
                result.map(drop),
                &["amount_cents", "reason", "reference"],
            );
        }

        let result = app
            .payments()
            .schedule_payment(pb::SchedulePaymentRequest {
                subsidy_id: id.clone(),
                kind: 0,
                request_id: "x".repeat(129),
            })
            .await;
        expect_invalid("schedule", result.map(drop), &["kind", "request_id"]);
    }

    // What the paying system reports, about the scheduled advance or an unknown payment.
    for id in [&advance.id, &unknown] {
        let record = |outcome: pb::PaymentOutcome| pb::RecordPaymentRequest {
            id: id.clone(),
            etag: String::new(),
            outcome: outcome as i32,
            reference: String::new(),
            failure_reason: String::new(),
            paid_on: String::new(),
        };
        let cases: &[(pb::RecordPaymentRequest, &[&str])] = &[
            (record(pb::PaymentOutcome::Unspecified), &["outcome"]),
            (record(pb::PaymentOutcome::Failed), &["failure_reason"]),
            (
                pb::RecordPaymentRequest {
                    reference: "x".repeat(101),
                    ..record(pb::PaymentOutcome::Sent)
                },
                &["reference"],
            ),
            (
                pb::RecordPaymentRequest {
                    reference: "x".repeat(101),
                    paid_on: "hier".into(),
                    ..record(pb::PaymentOutcome::Paid)
                },
                &["reference", "paid_on"],
            ),
        ];
        for (r, expected) in cases {
            let result = app.payments().record_payment(r.clone()).await;
            expect_invalid(&format!("record {r:?}"), result.map(drop), expected);
        }
    }
    // None of them changed anything.
    assert_eq!(app.subsidies_of(&granted_plan).await, before);
}

async fn region_filters_refuse_a_malformed_code(topology: Topology) {
    let app = App::start(topology).await;
    let territory = app.territory("Roanne", "84").await;
    let plan = uuid::Uuid::now_v7().to_string();
    app.publish(app.year_submitted(&plan, &territory, 1, 1, 100_000))
        .await;
    app.wait_for_subsidy(&plan, |_| true).await;
    app.envelope(1_000_000).await;
    for code in [
        "8",
        "840",
        "99",
        "00",
        "2A",
        "ab",
        "８４",
        "8\u{0}",
        "x".repeat(10).as_str(),
    ] {
        let what = format!("région {code:?}");
        let result = app
            .envelopes()
            .list_envelopes(pb::ListEnvelopesRequest {
                region_code: code.into(),
                ..Default::default()
            })
            .await;
        expect_invalid(&what, result.map(drop), &["region_code"]);
        let result = app
            .subsidies()
            .list_subsidies(pb::ListSubsidiesRequest {
                region_code: code.into(),
                ..Default::default()
            })
            .await;
        expect_invalid(&what, result.map(drop), &["region_code"]);
        let result = app
            .ledger()
            .list_ledger_entries(pb::ListLedgerEntriesRequest {
                region_code: code.into(),
                ..Default::default()
            })
            .await;
        expect_invalid(&what, result.map(drop), &["region_code"]);
    }
    // A well-formed code filters; empty (or blank) does not.
    for (code, subsidies) in [("84", 1), ("11", 0), ("", 1), (" 84 ", 1)] {
        let listed = app
            .subsidies()
            .list_subsidies(pb::ListSubsidiesRequest {
                region_code: code.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .subsidies;
        assert_eq!(listed.len(), subsidies, "région {code:?}");
    }
}
