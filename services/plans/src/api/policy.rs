//! Who may call what: the scope of every method of the plans service (one table, deny by
//! default). Which plans a caller sees is then decided per call by the handlers.

use tde_runtime::auth::MethodPolicy;
use tde_runtime::auth::scope::{PLANS_ADMIN, PLANS_READ, PLANS_WRITE};

/// Every change of a plan, its actions and meetings is the programme's (national team,
/// project leads): territory members read their plan.
pub const POLICIES: &[MethodPolicy] = &[
    // Plans.
    MethodPolicy::programme("/tde.plans.v1.PlanService/CreatePlan", PLANS_WRITE),
    MethodPolicy::read("/tde.plans.v1.PlanService/GetPlan", PLANS_READ),
    MethodPolicy::read("/tde.plans.v1.PlanService/ListPlans", PLANS_READ),
    MethodPolicy::programme("/tde.plans.v1.PlanService/UpdatePlan", PLANS_WRITE),
    MethodPolicy::write("/tde.plans.v1.PlanService/StopPlan", PLANS_ADMIN),
    MethodPolicy::programme("/tde.plans.v1.PlanService/CompletePlan", PLANS_WRITE),
    MethodPolicy::programme("/tde.plans.v1.PlanService/AddCharterVersion", PLANS_WRITE),
    MethodPolicy::programme("/tde.plans.v1.PlanService/SignCharter", PLANS_WRITE),
    MethodPolicy::programme("/tde.plans.v1.PlanService/SubmitPlanYear", PLANS_WRITE),
    MethodPolicy::programme("/tde.plans.v1.PlanService/RecordReview", PLANS_WRITE),
    MethodPolicy::programme("/tde.plans.v1.PlanService/AddCelebration", PLANS_WRITE),
    // Actions.
    MethodPolicy::programme("/tde.plans.v1.ActionService/CreateAction", PLANS_WRITE),
    MethodPolicy::read("/tde.plans.v1.ActionService/GetAction", PLANS_READ),
    MethodPolicy::read("/tde.plans.v1.ActionService/ListActions", PLANS_READ),
    MethodPolicy::programme("/tde.plans.v1.ActionService/UpdateAction", PLANS_WRITE),
    MethodPolicy::programme(
        "/tde.plans.v1.ActionService/ChangeActionStatus",
        PLANS_WRITE,
    ),
    // Matching (a national service account) assigns providers.
    MethodPolicy::write("/tde.plans.v1.ActionService/AssignProvider", PLANS_ADMIN),
    // Steering meetings.
    MethodPolicy::programme(
        "/tde.plans.v1.SteeringMeetingService/ScheduleSteeringMeeting",
        PLANS_WRITE,
    ),
    MethodPolicy::read(
        "/tde.plans.v1.SteeringMeetingService/GetSteeringMeeting",
        PLANS_READ,
    ),
    MethodPolicy::read(
        "/tde.plans.v1.SteeringMeetingService/ListSteeringMeetings",
        PLANS_READ,
    ),
    MethodPolicy::programme(
        "/tde.plans.v1.SteeringMeetingService/RescheduleSteeringMeeting",
        PLANS_WRITE,
    ),
    MethodPolicy::programme(
        "/tde.plans.v1.SteeringMeetingService/CancelSteeringMeeting",
        PLANS_WRITE,
    ),
    MethodPolicy::programme(
        "/tde.plans.v1.SteeringMeetingService/RecordSteeringMeetingHeld",
        PLANS_WRITE,
    ),
];

#[cfg(test)]
mod tests {
    /// Every method of the service's protos has exactly one policy, and no policy names a
    /// method that does not exist.
    #[test]
    fn every_method_has_a_policy() {
        tde_runtime::auth::policy::assert_covers(crate::GRPC_SERVICES, super::POLICIES);
    }
}
