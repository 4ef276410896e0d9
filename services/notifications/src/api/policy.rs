//! Who may call what: the scope of every method of the notifications service.

use tde_runtime::auth::MethodPolicy;
use tde_runtime::auth::scope::{NOTIFICATIONS_READ, NOTIFICATIONS_WRITE};

pub const POLICIES: &[MethodPolicy] = &[
    MethodPolicy::read(
        "/tde.notifications.v1.NotificationService/ListNotifications",
        NOTIFICATIONS_READ,
    ),
    MethodPolicy::read(
        "/tde.notifications.v1.NotificationService/ListDeliveries",
        NOTIFICATIONS_READ,
    ),
    MethodPolicy::programme(
        "/tde.notifications.v1.NotificationService/RetryNotification",
        NOTIFICATIONS_WRITE,
    ),
    MethodPolicy::read(
        "/tde.notifications.v1.NotificationService/ListRecipients",
        NOTIFICATIONS_READ,
    ),
    MethodPolicy::write(
        "/tde.notifications.v1.NotificationService/UpdateRecipientPreferences",
        NOTIFICATIONS_WRITE,
    ),
    MethodPolicy::read(
        "/tde.notifications.v1.NotificationService/GetCalendarFeed",
        NOTIFICATIONS_READ,
    ),
    MethodPolicy::programme(
        "/tde.notifications.v1.NotificationService/SetReminderTime",
        NOTIFICATIONS_WRITE,
    ),
    MethodPolicy::programme(
        "/tde.notifications.v1.NotificationService/RetryDeadNotifications",
        NOTIFICATIONS_WRITE,
    ),
];

#[cfg(test)]
mod tests {
    #[test]
    fn every_method_has_a_policy() {
        tde_runtime::auth::policy::assert_covers(crate::GRPC_SERVICES, super::POLICIES);
    }
}
