//! The subsidies service over gRPC, on both topologies: a submitted plan year opens a
//! request, decisions need four eyes, the advance is paid at approval and the balance only
//! after the review, a stopped plan decommits what will not be paid, the ledger is
//! append-only and every balance reconciles with it.

mod common;

use tde_proto::subsidies::v1 as pb;
use tde_runtime::auth::{Role, TokenSpec};
use tde_runtime::testing::Topology;
use tonic::Code;

use common::{App, drain, fields, precondition};

tde_runtime::on_both_topologies!(
    a_submitted_year_opens_a_request_and_redeliveries_change_nothing,
    four_eyes_then_advance_review_and_balance_pay_the_grant_exactly,
    a_stopped_plan_decommits_the_unpaid_remainder_then_a_clawback_is_ordered,
    the_ledger_refuses_updates_and_deletes,
    a_member_sees_only_their_territorys_subsidy,
    exports_follow_the_scdl_columns_and_the_ledger,
    decommitment_returns_money_and_overdue_reviews_are_listed,
    a_region_sub_envelope_counts_against_the_national_one,
    a_reduced_programme_decommits_what_it_no_longer_needs,
    a_consumer_change_matching_no_version_is_retried_not_lost,
    the_dashboard_shows_what_every_envelope_has_left,
);

async fn a_submitted_year_opens_a_request_and_redeliveries_change_nothing(topology: Topology) {
    let app = App::start(topology).await;
    let mut events = app.subscribe().await;
    let territory = app.territory("Saint-Étienne", "84").await;
    let plan = uuid::Uuid::now_v7().to_string();
    let submitted = app.year_submitted(&plan, &territory, 1, 1, 2_050_050);
    app.publish(submitted.clone()).await;
    let s = app.wait_for_subsidy(&plan, |_| true).await;
    assert_eq!(s.requested_cents, 2_050_050);
    assert_eq!(s.status, pb::SubsidyStatus::Requested as i32);
    assert_eq!(s.territory_name, "Saint-Étienne");
    assert_eq!(s.region_code, "84");
    assert_eq!(s.budget_year, 2027);
    assert_eq!(
        s.review_due_date, "2028-03-31",
        "90 days after the year ends"
    );

    // The same event processed again, through the consumer's own inbox and through a fresh
    // one (as after a lost inbox record): nothing changes.
    let ctx = app.ctx();
    let durable = ctx.namespace.durable("subsidies_plans");
    for inbox in [durable.as_str(), "another_inbox"] {
        tde_runtime::inbox::process(
            &ctx.db,
            inbox,
            &tde_subsidies::events::PlanEvents,
            &submitted,
        )
        .await
        .expect("processed");
    }
    let again = app.wait_for_subsidy(&plan, |_| true).await;
    assert_eq!(again.etag, s.etag, "unchanged");
    // The same event on the bus again (a redelivery), and the same submission under another
    // event id (a republication): nothing changes.
    app.publish(submitted).await;
    app.publish(app.year_submitted(&plan, &territory, 1, 1, 9_999_999))
        .await;
    // An amendment of the undecided year updates its request; it comes after the others on
    // the stream, so once it is applied they were all processed.
    app.publish(app.year_submitted(&plan, &territory, 1, 2, 2_100_000))
        .await;
    let s = app
        .wait_for_subsidy(&plan, |s| s.submission_number == 2)
        .await;
    assert_eq!(s.requested_cents, 2_100_000);
    assert_eq!(app.subsidies_of(&plan).await.len(), 1);
    assert_eq!(s.etag, "\"2\"", "one change: the amendment");

    // Once decided, a larger amendment opens an amendment request (avenant) for the
    // difference only.
    app.envelope(10_000_000).await;
    app.subsidies()
        .propose_decision(App::proposal(&s, 2_100_000))
        .await
        .unwrap();
    app.approvals()
        .approve_decision(pb::ApproveDecisionRequest {
            id: s.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    app.publish(app.year_submitted(&plan, &territory, 1, 3, 2_600_000))
        .await;
    let avenant = app
        .wait_for_subsidy(&plan, |s| s.amendment_number == 1)
        .await;
    assert_eq!(avenant.requested_cents, 500_000);
    assert_eq!(avenant.status, pb::SubsidyStatus::Requested as i32);

    let published = drain(&mut events).await;
    let types: Vec<&str> = published.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types
            .iter()
            .filter(|t| **t == "tde.subsidies.v1.SubsidyRequested")
            .count(),
        3,
        "{types:?}"
    );
    assert!(types.contains(&"tde.subsidies.v1.SubsidyDecided"));
    assert!(types.contains(&"tde.subsidies.v1.SubsidyCommitted"));
    assert!(types.contains(&"tde.subsidies.v1.PaymentScheduled"));
}

async fn four_eyes_then_advance_review_and_balance_pay_the_grant_exactly(topology: Topology) {
    let app = App::start(topology).await;
    let mut events = app.subscribe().await;
    let territory = app.territory("Saint-Étienne", "84").await;
    let plan = uuid::Uuid::now_v7().to_string();
    app.publish(app.year_submitted(&plan, &territory, 1, 1, 1_000_001))
        .await;
    let s = app.wait_for_subsidy(&plan, |_| true).await;
    let envelope = app.envelope(5_000_000).await;

    // No approval without a proposal; a bad proposal is refused field by field.
    let err = app
        .approvals()
        .approve_decision(pb::ApproveDecisionRequest {
            id: s.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    // The proposal as written is checked before the subsidy is read; then its amount against
    // what the subsidy requests.
    let mut bad = App::proposal(&s, 1_000_002);
    bad.beneficiary_siret = "21750001600018".into();
    let err = app.subsidies().propose_decision(bad).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(fields(&err), ["beneficiary_siret"]);
    let err = app
        .subsidies()
        .propose_decision(App::proposal(&s, 1_000_002))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(fields(&err), ["amount_cents"]);

    let proposed = app
        .subsidies()
        .propose_decision(App::proposal(&s, 1_000_001))
        .await
        .unwrap()
        .into_inner()
        .subsidy
        .unwrap();
    assert_eq!(proposed.status, pb::SubsidyStatus::Proposed as i32);
    assert_eq!(proposed.proposal.as_ref().unwrap().proposed_by, "alice");

    // Four eyes: who proposed cannot approve, even with the scope.
    let err = app
        .subsidies()
        .approve_decision(pb::ApproveDecisionRequest {
            id: s.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(precondition(&err).0, "FOUR_EYES");
    // A project lead cannot approve at all.
    let lead = app
        .channel_as(&TokenSpec::new(Role::ProjectLead, "lead").region("84"))
        .await;
    let err = tde_proto::subsidies::v1::subsidy_service_client::SubsidyServiceClient::new(lead)
        .approve_decision(pb::ApproveDecisionRequest {
            id: s.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    let approved = app
        .approvals()
        .approve_decision(pb::ApproveDecisionRequest {
            id: s.id.clone(),
            etag: proposed.etag.clone(),
            commitment_number: "EJ-2100012345".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let granted = approved.subsidy.unwrap();
    assert_eq!(granted.status, pb::SubsidyStatus::Granted as i32);
    assert_eq!(granted.granted_cents, 1_000_001);
    assert_eq!(granted.envelope_id, envelope.id);
    assert_eq!(granted.commitment_number, "EJ-2100012345");
    assert_eq!(granted.decided_by, "bob");
    let advance = approved.advance.unwrap();
    // 50 % of 10 000,01 € rounds half up to the cent.
    assert_eq!(advance.amount_cents, 500_001);
    assert_eq!(advance.status, pb::PaymentStatus::Scheduled as i32);

    // The advance: authorised, sent, paid.
    let mut p = app.payments();
    let advance = p
        .authorise_payment(pb::AuthorisePaymentRequest {
            id: advance.id.clone(),
            etag: advance.etag.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    let paid = p
        .record_payment(pb::RecordPaymentRequest {
            id: advance.id.clone(),
            etag: advance.etag.clone(),
            outcome: pb::PaymentOutcome::Paid as i32,
            reference: "VIR-2027-1".into(),
            failure_reason: String::new(),
            paid_on: "2027-03-01".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(paid.status, pb::PaymentStatus::Paid as i32);

    // The balance waits for the year's review, and says so.
    let schedule_balance = pb::SchedulePaymentRequest {
        subsidy_id: s.id.clone(),
        kind: pb::PaymentKind::Balance as i32,
        request_id: String::new(),
    };
    let err = p
        .schedule_payment(schedule_balance.clone())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let (kind, description) = precondition(&err);
    assert_eq!(kind, "REVIEW_MISSING");
    assert!(
        err.message()
            .contains("cannot be paid before its review (bilan)"),
        "{}",
        err.message()
    );
    assert!(description.contains("plan year 1"), "{description}");

    app.publish(app.review_recorded(&plan, &territory, 1)).await;
    app.wait_for_subsidy(&plan, |s| s.reviewed).await;
    let balance = p
        .schedule_payment(schedule_balance)
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(
        balance.amount_cents + 500_001,
        1_000_001,
        "advance + balance = grant"
    );
    let balance = p
        .authorise_payment(pb::AuthorisePaymentRequest {
            id: balance.id.clone(),
            etag: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    // Paid once; the same payment is never paid twice.
    p.record_payment(pb::RecordPaymentRequest {
        id: balance.id.clone(),
        outcome: pb::PaymentOutcome::Paid as i32,
        ..Default::default()
    })
    .await
    .unwrap();
    let err = p
        .record_payment(pb::RecordPaymentRequest {
            id: balance.id.clone(),
            outcome: pb::PaymentOutcome::Paid as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    let done = app.wait_for_subsidy(&plan, |_| true).await;
    assert_eq!(done.paid_cents, 1_000_001);
    assert_eq!(done.remaining_cents, 0);
    let envelope = app
        .envelopes()
        .get_envelope(pb::GetEnvelopeRequest { id: envelope.id })
        .await
        .unwrap()
        .into_inner()
        .envelope
        .unwrap();
    assert_eq!(envelope.committed_cents, 1_000_001);
    assert_eq!(envelope.paid_cents, 1_000_001);
    assert_eq!(envelope.available_cents, 5_000_000 - 1_000_001);

    // The ledger holds one commitment and two payments; every balance agrees with it.
    let entries = app
        .ledger()
        .list_ledger_entries(pb::ListLedgerEntriesRequest {
            subsidy_id: s.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    let kinds: Vec<i32> = entries.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            pb::LedgerEntryKind::Commitment as i32,
            pb::LedgerEntryKind::Payment as i32,
            pb::LedgerEntryKind::Payment as i32
        ]
    );
    let report = app
        .ledger()
        .reconcile(pb::ReconcileRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(report.entries_read, 3);
    assert!(
        report.discrepancies.is_empty(),
        "{:?}",
        report.discrepancies
    );
    let dashboard = app
        .ledger()
        .get_dashboard(pb::GetDashboardRequest { budget_year: 2027 })
        .await
        .unwrap()
        .into_inner()
        .rows;
    let total = dashboard.iter().find(|r| r.region_code.is_empty()).unwrap();
    assert_eq!(
        (
            total.requested_cents,
            total.granted_cents,
            total.committed_cents,
            total.paid_cents,
            total.available_cents
        ),
        (1_000_001, 1_000_001, 1_000_001, 1_000_001, 3_999_999)
    );

    let published = drain(&mut events).await;
    let types: Vec<&str> = published.iter().map(|e| e.event_type.as_str()).collect();
    for expected in [
        "tde.subsidies.v1.SubsidyDecided",
        "tde.subsidies.v1.SubsidyCommitted",
        "tde.subsidies.v1.PaymentScheduled",
        "tde.subsidies.v1.PaymentPaid",
    ] {
        assert!(types.contains(&expected), "{expected} in {types:?}");
    }
    let paid: Vec<pb::PaymentPaid> = published
        .iter()
        .filter(|e| e.event_type == "tde.subsidies.v1.PaymentPaid")
        .map(|e| prost::Message::decode(e.payload.clone()).unwrap())
        .collect();
    assert_eq!(paid.len(), 2);
    assert_eq!(paid[1].remaining_cents, 0);
}

/// A granted subsidy of `amount` on a fresh envelope, its advance paid; returns it.
async fn granted_with_advance_paid(
    app: &App,
    plan: &str,
    territory: &str,
    amount: i64,
) -> pb::Subsidy {
    app.publish(app.year_submitted(plan, territory, 1, 1, amount))
        .await;
    let s = app.wait_for_subsidy(plan, |_| true).await;
    app.subsidies()
        .propose_decision(App::proposal(&s, amount))
        .await
        .unwrap();
    let advance = app
        .approvals()
        .approve_decision(pb::ApproveDecisionRequest {
            id: s.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .advance
        .unwrap();
    let mut p = app.payments();
    p.authorise_payment(pb::AuthorisePaymentRequest {
        id: advance.id.clone(),
        etag: String::new(),
    })
    .await
    .unwrap();
    p.record_payment(pb::RecordPaymentRequest {
        id: advance.id.clone(),
        outcome: pb::PaymentOutcome::Paid as i32,
        ..Default::default()
    })
    .await
    .unwrap();
    app.wait_for_subsidy(plan, |s| s.paid_cents > 0).await
}

async fn a_stopped_plan_decommits_the_unpaid_remainder_then_a_clawback_is_ordered(
    topology: Topology,
) {
    let app = App::start(topology).await;
    let territory = app.territory("Montbrison", "84").await;
    let envelope = app.envelope(5_000_000).await;
    let plan = uuid::Uuid::now_v7().to_string();
    let s = granted_with_advance_paid(&app, &plan, &territory, 1_000_000).await;
    assert_eq!(s.paid_cents, 500_000);

    let stop = app.plan_stopped(&plan, &territory);
    app.publish(stop.clone()).await;
    let stopped = app.wait_for_subsidy(&plan, |s| s.plan_stopped).await;
    assert_eq!(stopped.decommitted_cents, 500_000);
    assert_eq!(stopped.committed_cents, 500_000);
    assert_eq!(stopped.remaining_cents, 0);
    // The stop's redelivery decommits nothing more.
    app.publish(stop).await;
    let envelope = app
        .envelopes()
        .get_envelope(pb::GetEnvelopeRequest { id: envelope.id })
        .await
        .unwrap()
        .into_inner()
        .envelope
        .unwrap();
    assert_eq!(
        envelope.committed_cents, 500_000,
        "the unpaid half returned"
    );
    // Nothing more is paid.
    let err = app
        .payments()
        .schedule_payment(pb::SchedulePaymentRequest {
            subsidy_id: s.id.clone(),
            kind: pb::PaymentKind::Balance as i32,
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    // A clawback of what was paid, never more.
    let clawback = |amount| pb::OrderClawbackRequest {
        id: s.id.clone(),
        etag: String::new(),
        amount_cents: amount,
        reason: "actions non réalisées".into(),
        reference: "TP-2027-7".into(),
    };
    let err = app
        .approvals()
        .order_clawback(clawback(500_001))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("5\u{202f}000,00"),
        "{}",
        err.message()
    );
    let s = app
        .approvals()
        .order_clawback(clawback(300_000))
        .await
        .unwrap()
        .into_inner()
        .subsidy
        .unwrap();
    assert_eq!(s.clawed_back_cents, 300_000);
    let report = app
        .ledger()
        .reconcile(pb::ReconcileRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(
        report.discrepancies.is_empty(),
        "{:?}",
        report.discrepancies
    );
    assert_eq!(
        report.entries_read, 4,
        "commitment, payment, decommitment, clawback"
    );
}

async fn the_ledger_refuses_updates_and_deletes(topology: Topology) {
    use sea_orm::ConnectionTrait as _;
    let app = App::start(topology).await;
    let territory = app.territory("Roanne", "84").await;
    app.envelope(5_000_000).await;
    let plan = uuid::Uuid::now_v7().to_string();
    granted_with_advance_paid(&app, &plan, &territory, 400_000).await;
    let db = &app.ctx().db;
    for sql in [
        "UPDATE ledger_entries SET amount_cents = 1",
        "DELETE FROM ledger_entries",
    ] {
        let err = db.execute_unprepared(sql).await.unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    let report = app
        .ledger()
        .reconcile(pb::ReconcileRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(report.entries_read, 2);
    assert!(report.discrepancies.is_empty());
    // A balance changed behind the ledger's back is reported.
    db.execute_unprepared("UPDATE envelopes SET paid_cents = paid_cents - 1")
        .await
        .unwrap();
    let report = app
        .ledger()
        .reconcile(pb::ReconcileRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(report.discrepancies.len(), 1, "{:?}", report.discrepancies);
    assert_eq!(report.discrepancies[0].field, "paid_cents");
    assert_eq!(report.discrepancies[0].ledger_cents, 200_000);
    // So is a running total of the dashboard changed behind the ledger's back.
    db.execute_unprepared("UPDATE ledger_totals SET committed_cents = committed_cents + 5")
        .await
        .unwrap();
    let report = app
        .ledger()
        .reconcile(pb::ReconcileRequest {})
        .await
        .unwrap()
        .into_inner();
    let totals: Vec<_> = report
        .discrepancies
        .iter()
        .filter(|d| d.resource_type == "ledger_totals")
        .collect();
    assert_eq!(totals.len(), 1, "{:?}", report.discrepancies);
    assert_eq!(totals[0].resource_id, "2027/84");
    assert_eq!(
        (totals[0].stored_cents, totals[0].ledger_cents),
        (400_005, 400_000)
    );
}

async fn a_member_sees_only_their_territorys_subsidy(topology: Topology) {
    let app = App::start(topology).await;
    let ours = app.territory("Saint-Étienne", "84").await;
    let theirs = app.territory("Brest", "53").await;
    let (plan_a, plan_b) = (
        uuid::Uuid::now_v7().to_string(),
        uuid::Uuid::now_v7().to_string(),
    );
    app.publish(app.year_submitted(&plan_a, &ours, 1, 1, 100_000))
        .await;
    app.publish(app.year_submitted(&plan_b, &theirs, 1, 1, 200_000))
        .await;
    let a = app.wait_for_subsidy(&plan_a, |_| true).await;
    let b = app.wait_for_subsidy(&plan_b, |_| true).await;
    let member = app
        .channel_as(&TokenSpec::new(Role::TerritoryMember, "elu").territory(ours.clone()))
        .await;
    let mut client =
        tde_proto::subsidies::v1::subsidy_service_client::SubsidyServiceClient::new(member.clone());
    let own = client
        .get_subsidy(pb::GetSubsidyRequest { id: a.id.clone() })
        .await
        .unwrap()
        .into_inner()
        .subsidy
        .unwrap();
    assert_eq!(own.requested_cents, 100_000);
    let err = client
        .get_subsidy(pb::GetSubsidyRequest { id: b.id.clone() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let listed = client
        .list_subsidies(pb::ListSubsidiesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .subsidies;
    assert_eq!(
        listed.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        [a.id.as_str()]
    );
    // Members take no decision, and see no envelope.
    let err = client
        .propose_decision(App::proposal(&a, 100_000))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = tde_proto::subsidies::v1::envelope_service_client::EnvelopeServiceClient::new(member)
        .list_envelopes(pb::ListEnvelopesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    // An agency reads everything, and decides nothing.
    let agency = app.channel_as(&TokenSpec::new(Role::Agency, "dgfip")).await;
    let mut client =
        tde_proto::subsidies::v1::subsidy_service_client::SubsidyServiceClient::new(agency);
    let all = client
        .list_subsidies(pb::ListSubsidiesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .subsidies;
    assert_eq!(all.len(), 2);
    let err = client
        .refuse_subsidy(pb::RefuseSubsidyRequest {
            id: b.id.clone(),
            etag: String::new(),
            reason: "non".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
}

async fn exports_follow_the_scdl_columns_and_the_ledger(topology: Topology) {
    use tokio_stream::StreamExt as _;
    let app = App::start(topology).await;
    let territory = app.territory("Saint-Étienne", "84").await;
    app.envelope(5_000_000).await;
    let plan = uuid::Uuid::now_v7().to_string();
    granted_with_advance_paid(&app, &plan, &territory, 1_234_567).await;
    let export = |format: pb::ExportFormat| {
        let mut ledger = app.ledger();
        async move {
            let mut stream = ledger
                .export_subsidies(pb::ExportSubsidiesRequest {
                    format: format as i32,
                    budget_year: 2027,
                })
                .await
                .unwrap()
                .into_inner();
            let mut bytes = Vec::new();
            while let Some(chunk) = stream.next().await {
                bytes.extend(chunk.unwrap().data);
            }
            String::from_utf8(bytes).unwrap()
        }
    };
    let scdl = export(pb::ExportFormat::Scdl).await;
    let mut lines = scdl.lines();
    assert_eq!(
        lines.next().unwrap(),
        "nomAttribuant,idAttribuant,dateConvention,referenceDecision,nomBeneficiaire,idBeneficiaire,rnaBeneficiaire,objet,montant,nature,conditionsVersement,datesPeriodeVersement,idRAE,notificationUE,pourcentageSubvention,dispositifAide"
    );
    assert_eq!(
        lines.next().unwrap(),
        "Agence nationale de la cohésion des territoires,13002603200016,2027-02-01,CONV-2027-042,Saint-Étienne,21750001600019,,\"Territoires d'engagement : plan d'accompagnement, année 1\",12345.67,aide en numéraire,échelonné,2027-01-01_2027-12-31,,non,1,Territoires d'engagement"
    );
    assert!(lines.next().is_none());
    let ledger = export(pb::ExportFormat::Ledger).await;
    let lines: Vec<&str> = ledger.lines().collect();
    assert_eq!(lines.len(), 3, "{ledger}");
    assert!(lines[0].starts_with("id,recorded_at,kind,amount_eur,amount_cents"));
    assert!(
        lines[1].contains(",commitment,12345.67,1234567,2027,84,"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].contains(",payment,6172.84,617284,"),
        "{}",
        lines[2]
    );
}

async fn decommitment_returns_money_and_overdue_reviews_are_listed(topology: Topology) {
    let app = App::start(topology).await;
    let territory = app.territory("Firminy", "84").await;
    let envelope = app.envelope(5_000_000).await;
    let plan = uuid::Uuid::now_v7().to_string();
    app.publish(app.year_submitted(&plan, &territory, 1, 1, 1_000_000))
        .await;
    let s = app.wait_for_subsidy(&plan, |_| true).await;
    app.subsidies()
        .propose_decision(App::proposal(&s, 1_000_000))
        .await
        .unwrap();
    app.approvals()
        .approve_decision(pb::ApproveDecisionRequest {
            id: s.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    // The advance (500 000) is under way: at most the other half can be decommitted.
    let decommit = |amount| pb::DecommitRequest {
        id: s.id.clone(),
        etag: String::new(),
        amount_cents: amount,
        reason: "action annulée".into(),
    };
    let err = app
        .approvals()
        .decommit(decommit(500_001))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(precondition(&err).0, "BEYOND_UNPAID");
    let err = app.approvals().decommit(decommit(0)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let s = app
        .approvals()
        .decommit(decommit(200_000))
        .await
        .unwrap()
        .into_inner()
        .subsidy
        .unwrap();
    assert_eq!(s.committed_cents, 800_000);
    assert_eq!(s.decommitted_cents, 200_000);
    let envelope = app
        .envelopes()
        .get_envelope(pb::GetEnvelopeRequest { id: envelope.id })
        .await
        .unwrap()
        .into_inner()
        .envelope
        .unwrap();
    assert_eq!(envelope.available_cents, 5_000_000 - 800_000);
    // An envelope never goes below what is committed.
    let err = app
        .envelopes()
        .change_envelope_amount(pb::ChangeEnvelopeAmountRequest {
            id: envelope.id.clone(),
            etag: envelope.etag.clone(),
            amount_cents: 799_999,
            reason: "gel".into(),
            act_reference: "DM 1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(precondition(&err).0, "BELOW_COMMITTED");

    // The year ends on 2028-01-01: its review is due 90 days later.
    let overdue = |as_of: &str| {
        let mut client = app.approvals();
        let as_of = as_of.to_string();
        async move {
            client
                .list_overdue_reviews(pb::ListOverdueReviewsRequest {
                    as_of_date: as_of,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .overdue
        }
    };
    assert!(overdue("2028-03-31").await.is_empty());
    let late = overdue("2028-04-01").await;
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].review_due_date, "2028-03-31");
    assert_eq!(
        late[0].balance_waiting_cents, 300_000,
        "committed − advance"
    );
    app.publish(app.review_recorded(&plan, &territory, 1)).await;
    app.wait_for_subsidy(&plan, |s| s.reviewed).await;
    assert!(overdue("2028-04-01").await.is_empty());
    let report = app
        .ledger()
        .reconcile(pb::ReconcileRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(
        report.discrepancies.is_empty(),
        "{:?}",
        report.discrepancies
    );
}

/// A requested subsidy of `amount` in `region`, proposed and then approved: the approval's
/// outcome.
async fn approve_new(app: &App, region: &str, amount: i64) -> Result<pb::Subsidy, tonic::Status> {
    let territory = app.territory("Commune", region).await;
    let plan = uuid::Uuid::now_v7().to_string();
    app.publish(app.year_submitted(&plan, &territory, 1, 1, amount))
        .await;
    let s = app.wait_for_subsidy(&plan, |_| true).await;
    app.subsidies()
        .propose_decision(App::proposal(&s, amount))
        .await
        .unwrap();
    app.approvals()
        .approve_decision(pb::ApproveDecisionRequest {
            id: s.id,
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().subsidy.unwrap())
}

async fn a_region_sub_envelope_counts_against_the_national_one(topology: Topology) {
    let app = App::start(topology).await;
    let national = app.envelope(1_000_000).await;
    let sub = |amount| pb::CreateEnvelopeRequest {
        budget_year: 2027,
        region_code: "84".into(),
        amount_cents: amount,
        advance_percent: 30,
        reason: "part de la région".into(),
        act_reference: "DM 2027-1".into(),
        request_id: String::new(),
    };
    // Never more than the national envelope holds.
    let err = app
        .envelopes()
        .create_envelope(sub(1_000_001))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let region = app
        .envelopes()
        .create_envelope(sub(600_000))
        .await
        .unwrap()
        .into_inner()
        .envelope
        .unwrap();
    assert_eq!(region.parent_id, national.id);
    // The national envelope cannot go below what it gave to régions.
    let err = app
        .envelopes()
        .change_envelope_amount(pb::ChangeEnvelopeAmountRequest {
            id: national.id.clone(),
            etag: String::new(),
            amount_cents: 599_999,
            reason: "gel".into(),
            act_reference: "DM 2027-2".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(precondition(&err).0, "BELOW_SUB_ENVELOPES");

    // Région 84 is charged to its sub-envelope (and its advance percentage), and so to the
    // national one.
    let granted = approve_new(&app, "84", 500_000).await.unwrap();
    assert_eq!(granted.envelope_id, region.id);
    assert_eq!(granted.advance_percent, 30);
    let err = approve_new(&app, "84", 200_000).await.unwrap_err();
    let (kind, description) = precondition(&err);
    assert_eq!(kind, "OVER_BUDGET");
    assert!(
        description.contains("région 84 has 1\u{202f}000,00"),
        "{description}"
    );
    // Another région is charged to the national envelope, which has what régions did not use
    // of it: 1 000 000 − 500 000 committed.
    approve_new(&app, "53", 450_000).await.unwrap();
    let err = approve_new(&app, "53", 100_000).await.unwrap_err();
    let (kind, description) = precondition(&err);
    assert_eq!(kind, "OVER_BUDGET");
    assert!(
        description.contains("envelope 2027 has 500,00"),
        "{description}"
    );
    let envelopes = app
        .envelopes()
        .list_envelopes(pb::ListEnvelopesRequest {
            budget_year: 2027,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .envelopes;
    let committed = |id: &str| {
        envelopes
            .iter()
            .find(|e| e.id == id)
            .map(|e| e.committed_cents)
            .unwrap()
    };
    assert_eq!(committed(&national.id), 950_000);
    assert_eq!(committed(&region.id), 500_000);
    let report = app
        .ledger()
        .reconcile(pb::ReconcileRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(
        report.discrepancies.is_empty(),
        "{:?}",
        report.discrepancies
    );
}

/// A year's programme amended below its grant: what is committed beyond the new budget and
/// not yet paid returns to the envelope; what was paid beyond it stays (a clawback may be
/// ordered), and the ledger still reconciles.
async fn a_reduced_programme_decommits_what_it_no_longer_needs(topology: Topology) {
    let app = App::start(topology).await;
    let territory = app.territory("Firminy", "84").await;
    let envelope = app.envelope(5_000_000).await;
    let plan = uuid::Uuid::now_v7().to_string();
    let s = granted_with_advance_paid(&app, &plan, &territory, 1_000_000).await;
    assert_eq!((s.committed_cents, s.paid_cents), (1_000_000, 500_000));

    app.publish(app.year_submitted(&plan, &territory, 1, 2, 700_000))
        .await;
    let reduced = app
        .wait_for_subsidy(&plan, |s| s.decommitted_cents > 0)
        .await;
    assert_eq!(reduced.decommitted_cents, 300_000);
    assert_eq!(reduced.committed_cents, 700_000);
    assert_eq!(app.subsidies_of(&plan).await.len(), 1, "no avenant");

    // Below what was paid: only the unpaid part goes.
    app.publish(app.year_submitted(&plan, &territory, 1, 3, 400_000))
        .await;
    let reduced = app
        .wait_for_subsidy(&plan, |s| s.decommitted_cents > 300_000)
        .await;
    assert_eq!(reduced.committed_cents, 500_000, "what was paid stays");
    assert_eq!(reduced.remaining_cents, 0);
    let envelope = app
        .envelopes()
        .get_envelope(pb::GetEnvelopeRequest { id: envelope.id })
        .await
        .unwrap()
        .into_inner()
        .envelope
        .unwrap();
    assert_eq!(envelope.committed_cents, 500_000);
    let report = app
        .ledger()
        .reconcile(pb::ReconcileRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(
        report.discrepancies.is_empty(),
        "{:?}",
        report.discrepancies
    );
}

/// Makes every UPDATE of a subsidy match no row (`on`), as a change made meanwhile by a
/// writer that did not take the row's lock would, or undoes it.
async fn skip_subsidy_updates(db: &sea_orm::DatabaseConnection, on: bool) {
    use sea_orm::ConnectionTrait as _;
    let postgres = db.get_database_backend() == sea_orm::DbBackend::Postgres;
    let statements: &[&str] = match (postgres, on) {
        (true, true) => &[
            "CREATE OR REPLACE FUNCTION skip_update() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$",
            "CREATE TRIGGER skip_subsidy_updates BEFORE UPDATE ON subsidies FOR EACH ROW EXECUTE FUNCTION skip_update()",
        ],
        (true, false) => &["DROP TRIGGER skip_subsidy_updates ON subsidies"],
        (false, true) => &[
            "CREATE TRIGGER skip_subsidy_updates BEFORE UPDATE ON subsidies BEGIN SELECT RAISE(IGNORE); END",
        ],
        (false, false) => &["DROP TRIGGER skip_subsidy_updates"],
    };
    for sql in statements {
        db.execute_unprepared(sql).await.expect(sql);
    }
}

async fn a_consumer_change_matching_no_version_is_retried_not_lost(topology: Topology) {
    use tde_runtime::inbox::{self, HandlerError};
    use tde_subsidies::events::PlanEvents;
    let app = App::start(topology).await;
    let territory = app.territory("Roanne", "84").await;
    app.envelope(5_000_000).await;
    let plan = uuid::Uuid::now_v7().to_string();
    // Year 1 granted (400 000, its advance paid), year 2 requested.
    granted_with_advance_paid(&app, &plan, &territory, 400_000).await;
    app.publish(app.year_submitted(&plan, &territory, 2, 1, 300_000))
        .await;
    app.wait_for_subsidy(&plan, |s| s.plan_year == 2).await;
    let before = app.subsidies_of(&plan).await;

    // Every consumer's change of a subsidy, in the order they are retried below.
    let events = [
        (
            "a newer submission asking the decided year nothing more",
            app.year_submitted(&plan, &territory, 1, 2, 400_000),
        ),
        (
            "a programme reduced below its grant",
            app.year_submitted(&plan, &territory, 1, 3, 100_000),
        ),
        (
            "a newer submission of the open year",
            app.year_submitted(&plan, &territory, 2, 2, 350_000),
        ),
        (
            "the year's review",
            app.review_recorded(&plan, &territory, 1),
        ),
        ("the plan stopped", app.plan_stopped(&plan, &territory)),
    ];
    let db = &app.ctx().db;
    skip_subsidy_updates(db, true).await;
    for (what, event) in &events {
        let result = inbox::process(db, "test_plans", &PlanEvents, event).await;
        assert!(
            matches!(result, Err(HandlerError::Transient(_))),
            "{what}: {result:?}"
        );
    }
    assert_eq!(app.subsidies_of(&plan).await, before, "nothing half done");

    // Retried once the updates match again: each one applies.
    skip_subsidy_updates(db, false).await;
    for (what, event) in &events {
        let applied = inbox::process(db, "test_plans", &PlanEvents, event).await;
        assert!(applied.expect(what), "{what}");
    }
    let after = app.subsidies_of(&plan).await;
    let (year1, year2) = (&after[0], &after[1]);
    assert_eq!(year1.submission_number, 3);
    assert!(year1.reviewed && year1.plan_stopped);
    // 400 000 granted, 200 000 paid: the reduction to 100 000 decommitted the unpaid half.
    assert_eq!(year1.decommitted_cents, 200_000);
    assert_eq!(year2.submission_number, 2);
    assert_eq!(year2.requested_cents, 350_000);
    assert_eq!(year2.status, pb::SubsidyStatus::Closed as i32);
    let report = app
        .ledger()
        .reconcile(pb::ReconcileRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(
        report.discrepancies.is_empty(),
        "{:?}",
        report.discrepancies
    );
}

async fn the_dashboard_shows_what_every_envelope_has_left(topology: Topology) {
    use sea_orm::ConnectionTrait as _;
    let app = App::start(topology).await;
    let national = app.envelope(1_000_000).await;
    let open = |year: i32, region: &str, amount: i64| pb::CreateEnvelopeRequest {
        budget_year: year,
        region_code: region.into(),
        amount_cents: amount,
        advance_percent: 30,
        reason: "loi de finances".into(),
        act_reference: "LFI".into(),
        request_id: String::new(),
    };
    for r in [open(2027, "84", 300_000), open(2028, "", 700_000)] {
        app.envelopes().create_envelope(r).await.unwrap();
    }
    let territory = app.territory("Roanne", "84").await;
    let plan = uuid::Uuid::now_v7().to_string();
    // Granted from the région's envelope: 100 000 committed.
    granted_with_advance_paid(&app, &plan, &territory, 100_000).await;
    // However many envelopes a year has (here, many more rows than any page), and whatever
    // their ids, each is counted: the database sums them.
    let db = &app.ctx().db;
    db.execute_unprepared(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10001) \
         INSERT INTO envelopes (id, budget_year, region_code, parent_id, amount_cents, \
         committed_cents, paid_cents, advance_percent, changes, version, created_at, updated_at) \
         SELECT '0000-' || i, 2027, 'test-' || i, NULL, 0, 0, 0, 30, '[]', 1, \
         CURRENT_TIMESTAMP, CURRENT_TIMESTAMP FROM n",
    )
    .await
    .unwrap();
    assert!(national.id.as_str() > "0000-");
    let rows = app
        .ledger()
        .get_dashboard(pb::GetDashboardRequest { budget_year: 0 })
        .await
        .unwrap()
        .into_inner()
        .rows;
    let row = |year: i32, region: &str| {
        rows.iter()
            .find(|r| r.budget_year == year && r.region_code == region)
            .unwrap_or_else(|| panic!("no row {year}/{region}: {rows:?}"))
    };
    // The national envelope of 2027 (10 000 €) gave 3 000 € to région 84, which committed
    // 1 000 €: the national one counts it too.
    assert_eq!(row(2027, "").available_cents, 900_000);
    assert_eq!(row(2027, "84").available_cents, 200_000);
    assert_eq!(row(2027, "84").committed_cents, 100_000);
    // A year with an envelope and no subsidy.
    assert_eq!(row(2028, "").available_cents, 700_000);
    assert_eq!(rows.len(), 3, "{rows:?}");
}
