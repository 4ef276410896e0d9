//! Generated gRPC and event types of every tde service, and the descriptor set used for
//! reflection and JSON rendering.

/// The encoded `FileDescriptorSet` of every tde proto (for gRPC reflection).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/tde_descriptor.bin"));

#[doc(hidden)]
pub mod territory_facts;

pub mod territories {
    pub mod v1 {
        tonic::include_proto!("tde.territories.v1");

        /// Subject suffixes of the territories events, under `tde.territories.`.
        pub mod subjects {
            pub const TERRITORY_REGISTERED: &str = "territory.registered";
            pub const TERRITORY_STAGE_CHANGED: &str = "territory.stage_changed";
            pub const TERRITORY_CODE_CHANGED: &str = "territory.code_changed";
            pub const TERRITORY_GEOGRAPHY_UPDATED: &str = "territory.geography_updated";
            pub const TERRITORY_MERGE_CONFLICT: &str = "territory.merge_conflict";
            pub const TERRITORY_MERGE_CONFLICT_RESOLVED: &str = "territory.merge_conflict_resolved";
            pub const DIAGNOSTIC_RECORDED: &str = "territory.diagnostic_recorded";
            pub const STEERING_BODY_CHANGED: &str = "territory.steering_body_changed";
            pub const TERRITORY_WITHDRAWN: &str = "territory.withdrawn";
            pub const PERSONAL_DATA_ERASED: &str = "personal_data.erased";
        }

        pub use crate::territory_facts as facts;
    }
}

pub mod plans {
    pub mod v1 {
        tonic::include_proto!("tde.plans.v1");

        /// Subject suffixes of the plans events, under `tde.plans.`.
        pub mod subjects {
            pub const CHARTER_SIGNED: &str = "plan.charter_signed";
            pub const PLAN_STATUS_CHANGED: &str = "plan.status_changed";
            pub const PLAN_YEAR_SUBMITTED: &str = "plan.year_submitted";
            pub const REVIEW_RECORDED: &str = "plan.review_recorded";
            pub const MEETING_SCHEDULED: &str = "meeting.scheduled";
            pub const MEETING_RESCHEDULED: &str = "meeting.rescheduled";
            pub const MEETING_CANCELLED: &str = "meeting.cancelled";
            pub const MEETING_HELD: &str = "meeting.held";
            pub const ACTION_CREATED: &str = "action.created";
            pub const ACTION_UPDATED: &str = "action.updated";
            pub const ACTION_STATUS_CHANGED: &str = "action.status_changed";
            pub const ACTION_PROVIDER_ASSIGNED: &str = "action.provider_assigned";
        }
    }
}

/// Vocabulary shared by several services (the closed list of skills).
pub mod common {
    pub mod v1 {
        tonic::include_proto!("tde.common.v1");
    }
}

pub mod matching {
    pub mod v1 {
        tonic::include_proto!("tde.matching.v1");

        /// Subject suffixes of the matching events, under `tde.matching.`.
        pub mod subjects {
            pub const PROVIDER_REGISTERED: &str = "provider.registered";
            pub const PROVIDER_STATUS_CHANGED: &str = "provider.status_changed";
            pub const PROPOSAL_SENT: &str = "proposal.sent";
            pub const PROPOSAL_DECLINED: &str = "proposal.declined";
            pub const PROPOSAL_EXPIRED: &str = "proposal.expired";
            pub const PROPOSAL_SUPERSEDED: &str = "proposal.superseded";
            pub const ASSIGNMENT_ACCEPTED: &str = "assignment.accepted";
        }
    }
}

pub mod notifications {
    pub mod v1 {
        tonic::include_proto!("tde.notifications.v1");
    }
}

pub mod subsidies {
    pub mod v1 {
        tonic::include_proto!("tde.subsidies.v1");

        /// Subject suffixes of the subsidies events, under `tde.subsidies.`.
        pub mod subjects {
            pub const SUBSIDY_REQUESTED: &str = "subsidy.requested";
            pub const SUBSIDY_DECIDED: &str = "subsidy.decided";
            pub const SUBSIDY_COMMITTED: &str = "subsidy.committed";
            pub const PAYMENT_SCHEDULED: &str = "payment.scheduled";
            pub const PAYMENT_PAID: &str = "payment.paid";
            pub const PAYMENT_FAILED: &str = "payment.failed";
            pub const CLAWBACK_ORDERED: &str = "clawback.ordered";
        }
    }
}

pub mod operations {
    pub mod v1 {
        tonic::include_proto!("tde.operations.v1");
    }
}

pub mod personal_data {
    pub mod v1 {
        tonic::include_proto!("tde.personal_data.v1");
    }
}

pub mod audit {
    pub mod v1 {
        tonic::include_proto!("tde.audit.v1");
    }
}

/// The descriptor pool of every tde proto, for JSON rendering and policy checks.
pub fn descriptor_pool() -> &'static prost_reflect::DescriptorPool {
    static POOL: std::sync::OnceLock<prost_reflect::DescriptorPool> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        prost_reflect::DescriptorPool::decode(FILE_DESCRIPTOR_SET)
            .expect("the descriptor set generated at build time decodes")
    })
}
