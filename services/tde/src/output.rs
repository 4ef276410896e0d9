//! Output of the operator commands: human tables by default, JSON on request (rendered from
//! the protobuf descriptors, field names as in the API).

use clap::ValueEnum;
use prost_reflect::{DynamicMessage, ReflectMessage as _};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    #[default]
    Table,
    Json,
}

/// Renders any tde message as canonical protobuf JSON.
pub fn to_json<M: prost::Message>(message: &M, full_name: &str) -> anyhow::Result<String> {
    let descriptor = tde_proto::descriptor_pool()
        .get_message_by_name(full_name)
        .ok_or_else(|| anyhow::anyhow!("unknown message {full_name}"))?;
    let dynamic = DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice())?;
    debug_assert_eq!(dynamic.descriptor().full_name(), full_name);
    Ok(serde_json::to_string_pretty(&dynamic)?)
}

pub fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    t.set_header(header.iter().copied());
    for r in rows {
        t.add_row(r);
    }
    t.to_string()
}
