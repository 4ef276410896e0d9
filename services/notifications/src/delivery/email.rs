//! E-mail: a multipart message (text, HTML, iCalendar) sent over SMTP with lettre, or written
//! as an .eml file when no SMTP relay is configured (`tde dev`).

use std::time::Duration;

use crate::settings::{NotificationSettings, SmtpSecurity};
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::SendError;
use crate::domain::message::{Email, Organizer};

/// Where e-mails go.
#[derive(Clone)]
pub enum Mailer {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    /// .eml files in a directory.
    Files(AsyncFileTransport<Tokio1Executor>),
}

impl Mailer {
    pub fn from_settings(s: &NotificationSettings) -> anyhow::Result<Self> {
        let Some(smtp) = &s.smtp else {
            std::fs::create_dir_all(&s.mail_dir)?;
            tracing::info!(dir = %s.mail_dir.display(), "no SMTP relay configured: e-mails are written as .eml files");
            return Ok(Mailer::Files(AsyncFileTransport::new(&s.mail_dir)));
        };
        let mut builder = match smtp.security {
            SmtpSecurity::Plain => {
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host)
            }
            SmtpSecurity::Starttls => {
                AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host)?
            }
            SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host)?,
        }
        .port(smtp.port)
        .timeout(Some(Duration::from_millis(smtp.timeout_ms)))
        .pool_config(lettre::transport::smtp::PoolConfig::new().max_size(smtp.pool_size));
        if let (Some(user), Some(password)) = (&smtp.username, &smtp.password) {
            builder = builder.credentials(Credentials::new(user.clone(), password.0.clone()));
        }
        Ok(Mailer::Smtp(builder.build()))
    }

    pub async fn send(&self, message: Message) -> Result<(), SendError> {
        match self {
            Mailer::Smtp(t) => t.send(message).await.map(|_| ()).map_err(|e| {
                if e.is_permanent() {
                    SendError::permanent(format!("SMTP refused: {e}"))
                } else {
                    SendError::transient(format!("SMTP: {e}"))
                }
            }),
            Mailer::Files(t) => t
                .send(message)
                .await
                .map(|_| ())
                .map_err(|e| SendError::transient(format!("writing the .eml file: {e}"))),
        }
    }
}

/// The MIME message of `email` to `to`: text and HTML alternatives, and the iCalendar part
/// both inline (`text/calendar; method=…`, which calendar clients act on) and attached.
pub fn build(
    email: &Email,
    to_name: &str,
    to_address: &str,
    organizer: &Organizer,
) -> Result<Message, SendError> {
    let from = Mailbox::new(
        Some(organizer.name.clone()),
        organizer
            .email
            .parse()
            .map_err(|e| SendError::permanent(format!("sender address: {e}")))?,
    );
    // lettre panics on a display name holding a line break (and mishandles other control
    // characters): such a name is refused here, so that this message alone fails.
    if to_name.chars().any(char::is_control) {
        return Err(SendError::permanent(
            "nom du destinataire invalide : il contient des caractères de contrôle (retour à la ligne…)",
        ));
    }
    if organizer.name.chars().any(char::is_control) {
        return Err(SendError::permanent(
            "nom de l'expéditeur invalide : il contient des caractères de contrôle",
        ));
    }
    if to_address
        .chars()
        .any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(SendError::permanent(
            "adresse du destinataire invalide : caractères interdits",
        ));
    }
    let to = Mailbox::new(
        (!to_name.trim().is_empty()).then(|| to_name.trim().to_string()),
        to_address
            .parse()
            .map_err(|e| SendError::permanent(format!("recipient address: {e}")))?,
    );
    let calendar_type = ContentType::parse(&format!(
        "text/calendar; charset=utf-8; method={}",
        email.method
    ))
    .map_err(|e| SendError::permanent(format!("content type: {e}")))?;
    let alternatives = MultiPart::alternative()
        .singlepart(SinglePart::plain(email.text.clone()))
        .singlepart(SinglePart::html(email.html.clone()))
        .singlepart(
            SinglePart::builder()
                .header(calendar_type.clone())
                .body(email.calendar.clone()),
        );
    let body = MultiPart::mixed().multipart(alternatives).singlepart(
        Attachment::new("invitation.ics".into()).body(email.calendar.clone(), calendar_type),
    );
    let mut builder = Message::builder()
        .from(from)
        .to(to)
        .subject(email.subject.clone())
        .message_id(Some(email.message_id.clone()));
    builder = builder.raw_header(HeaderValue::new(
        HeaderName::new_from_ascii_str("Content-Language"),
        "fr".into(),
    ));
    builder
        .multipart(body)
        .map_err(|e| SendError::permanent(format!("building the message: {e}")))
}
