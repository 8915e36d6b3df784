//! The embedded DynamoDB server (dynoxide, SQLite underneath), persisted at
//! `<data>/dynamodb.sqlite`, and its tables made from the very definitions
//! template.yaml deploys.
//!
//! dynoxide runs SQLite on the threads of the runtime that serves it, so it
//! gets a runtime thread of its own and never blocks the functions.

use std::path::Path;
use std::thread::JoinHandle;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};
use serde_yaml::Value;
use tokio::sync::watch;

use crate::StartError;

/// The SAM template, the one source of the table definitions.
const TEMPLATE: &str = include_str!("../../template.yaml");

/// How often expired items are removed (DynamoDB does it within days;
/// locally a minute keeps the tables small without costing much).
const TTL_SWEEP_EVERY: Duration = Duration::from_secs(60);

pub struct EmbeddedDynamo {
    thread: JoinHandle<()>,
}

impl EmbeddedDynamo {
    /// Opens the database and serves it on `listener` until `stop`.
    pub fn start(
        data_dir: &Path,
        listener: std::net::TcpListener,
        mut stop: watch::Receiver<bool>,
    ) -> Result<Self, StartError> {
        let path = data_dir.join("dynamodb.sqlite");
        let db = dynoxide::Database::new(&path.display().to_string())
            .map_err(|e| StartError::OpenDatabase(e.to_string()))?;
        // WAL with `synchronous = NORMAL`: a commit survives a crash of the
        // process; only a power cut may lose the last ones. SQLite's default
        // (FULL) syncs the disk on every write request.
        db.disable_bulk_loading()
            .map_err(|e| StartError::OpenDatabase(e.to_string()))?;

        let thread = std::thread::Builder::new()
            .name("dynamodb".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("dynamodb runtime");
                runtime.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("dynamodb listener");
                    let sweeper = tokio::spawn(sweep_ttl(db.clone()));
                    let shutdown = async move {
                        let _ = stop.wait_for(|stopped| *stopped).await;
                    };
                    if let Err(e) =
                        dynoxide::server::serve_with_shutdown(listener, db, shutdown).await
                    {
                        tracing::error!(error = %e, "dynamodb server failed");
                    }
                    sweeper.abort();
                });
            })
            .map_err(|source| StartError::DataDir { path, source })?;
        Ok(EmbeddedDynamo { thread })
    }

    /// Waits for the server thread to end (after the stop signal).
    pub fn join(self) {
        let _ = self.thread.join();
    }
}

async fn sweep_ttl(db: dynoxide::Database) {
    let mut every = tokio::time::interval(TTL_SWEEP_EVERY);
    loop {
        every.tick().await;
        let db = db.clone();
        match tokio::task::spawn_blocking(move || db.sweep_ttl()).await {
            Ok(Ok(n)) if n > 0 => tracing::debug!(items = n, "expired items removed"),
            Ok(Err(e)) => tracing::warn!(error = %e, "ttl sweep failed"),
            _ => {}
        }
    }
}

/// One `AWS::DynamoDB::Table` of the template.
#[derive(Debug, Clone, PartialEq)]
pub struct TableDefinition {
    pub logical_id: String,
    pub local_name: String,
    pub attributes: Vec<(String, String)>,
    pub key_schema: Vec<(String, String)>,
    pub indexes: Vec<IndexDefinition>,
    pub ttl_attribute: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IndexDefinition {
    pub name: String,
    pub key_schema: Vec<(String, String)>,
    pub projection_type: String,
    pub non_key_attributes: Vec<String>,
}

/// The local name of a template table: `TenantsTable` is
/// `pacs-hub-tenants`.
fn local_name(logical_id: &str) -> String {
    let base = logical_id.strip_suffix("Table").unwrap_or(logical_id);
    let mut name = String::from("pacs-hub");
    for c in base.chars() {
        if c.is_ascii_uppercase() {
            name.push('-');
        }
        name.push(c.to_ascii_lowercase());
    }
    name
}

/// Reads every table of template.yaml. CloudFormation tags (`!Ref`,
/// `!Sub`...) elsewhere in the file parse as tagged values and are ignored.
pub fn template_tables() -> Result<Vec<TableDefinition>, String> {
    let doc: Value = serde_yaml::from_str(TEMPLATE).map_err(|e| format!("template.yaml: {e}"))?;
    let resources = doc
        .get("Resources")
        .and_then(Value::as_mapping)
        .ok_or("template.yaml has no Resources")?;

    let mut tables = Vec::new();
    for (id, resource) in resources {
        if resource.get("Type").and_then(Value::as_str) != Some("AWS::DynamoDB::Table") {
            continue;
        }
        let logical_id = id
            .as_str()
            .ok_or("a resource id is not a string")?
            .to_owned();
        let props = resource
            .get("Properties")
            .ok_or_else(|| format!("{logical_id} has no Properties"))?;
        let pairs = |v: Option<&Value>, a: &str, b: &str| -> Vec<(String, String)> {
            v.and_then(Value::as_sequence)
                .into_iter()
                .flatten()
                .filter_map(|e| Some((text(e.get(a))?, text(e.get(b))?)))
                .collect()
        };
        let indexes = props
            .get("GlobalSecondaryIndexes")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
            .map(|gsi| {
                let projection = gsi.get("Projection");
                IndexDefinition {
                    name: text(gsi.get("IndexName")).unwrap_or_default(),
                    key_schema: pairs(gsi.get("KeySchema"), "AttributeName", "KeyType"),
                    projection_type: text(projection.and_then(|p| p.get("ProjectionType")))
                        .unwrap_or_else(|| "ALL".into()),
                    non_key_attributes: projection
                        .and_then(|p| p.get("NonKeyAttributes"))
                        .and_then(Value::as_sequence)
                        .into_iter()
                        .flatten()
                        .filter_map(|a| text(Some(a)))
                        .collect(),
                }
            })
            .collect();
        let ttl = props.get("TimeToLiveSpecification");
        let ttl_enabled = ttl.and_then(|t| t.get("Enabled")).and_then(Value::as_bool) == Some(true);
        tables.push(TableDefinition {
            local_name: local_name(&logical_id),
            attributes: pairs(
                props.get("AttributeDefinitions"),
                "AttributeName",
                "AttributeType",
            ),
            key_schema: pairs(props.get("KeySchema"), "AttributeName", "KeyType"),
            indexes,
            ttl_attribute: ttl_enabled
                .then(|| text(ttl.and_then(|t| t.get("AttributeName"))))
                .flatten(),
            logical_id,
        });
    }
    Ok(tables)
}

fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str).map(str::to_owned)
}

/// Creates each template table that does not exist yet.
pub async fn create_tables(client: &Client) -> Result<(), StartError> {
    let fail = StartError::CreateTables;
    let tables = template_tables().map_err(fail)?;
    let existing = client
        .list_tables()
        .send()
        .await
        .map_err(|e| {
            fail(format!(
                "ListTables: {}",
                aws_sdk_dynamodb::error::DisplayErrorContext(e)
            ))
        })?
        .table_names
        .unwrap_or_default();

    for table in tables {
        if existing.contains(&table.local_name) {
            continue;
        }
        create_table(client, &table).await.map_err(fail)?;
        tracing::info!(table = %table.local_name, "table created");
    }
    Ok(())
}

async fn create_table(client: &Client, table: &TableDefinition) -> Result<(), String> {
    let keys = |schema: &[(String, String)]| -> Result<Vec<KeySchemaElement>, String> {
        schema
            .iter()
            .map(|(name, kind)| {
                KeySchemaElement::builder()
                    .attribute_name(name)
                    .key_type(KeyType::from(kind.as_str()))
                    .build()
                    .map_err(|e| e.to_string())
            })
            .collect()
    };

    let mut request = client
        .create_table()
        .table_name(&table.local_name)
        .billing_mode(BillingMode::PayPerRequest)
        .set_key_schema(Some(keys(&table.key_schema)?));
    for (name, kind) in &table.attributes {
        request = request.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::from(kind.as_str()))
                .build()
                .map_err(|e| e.to_string())?,
        );
    }
    for index in &table.indexes {
        let projection = Projection::builder()
            .projection_type(ProjectionType::from(index.projection_type.as_str()))
            .set_non_key_attributes(
                (!index.non_key_attributes.is_empty()).then(|| index.non_key_attributes.clone()),
            )
            .build();
        request = request.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(&index.name)
                .set_key_schema(Some(keys(&index.key_schema)?))
                .projection(projection)
                .build()
                .map_err(|e| e.to_string())?,
        );
    }
    request.send().await.map_err(|e| {
        format!(
            "CreateTable {}: {}",
            table.local_name,
            aws_sdk_dynamodb::error::DisplayErrorContext(e)
        )
    })?;

    if let Some(attribute) = &table.ttl_attribute {
        let spec = TimeToLiveSpecification::builder()
            .attribute_name(attribute)
            .enabled(true)
            .build()
            .map_err(|e| e.to_string())?;
        client
            .update_time_to_live()
            .table_name(&table.local_name)
            .time_to_live_specification(spec)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "UpdateTimeToLive {}: {}",
                    table.local_name,
                    aws_sdk_dynamodb::error::DisplayErrorContext(e)
                )
            })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_tables_have_their_local_names_and_indexes() {
        let tables = template_tables().unwrap();
        let names: Vec<&str> = tables.iter().map(|t| t.local_name.as_str()).collect();
        assert!(names.contains(&crate::TENANTS_TABLE), "{names:?}");
        assert!(names.contains(&crate::ARCHIVE_TABLE), "{names:?}");
        for table in &tables {
            assert_eq!(table.ttl_attribute.as_deref(), Some("expiresAt"));
            assert!(table.indexes.iter().any(|i| i.name == "gsi1"), "{table:?}");
        }
        let archive = tables
            .iter()
            .find(|t| t.local_name == crate::ARCHIVE_TABLE)
            .unwrap();
        let index = |name: &str| archive.indexes.iter().find(|i| i.name == name).unwrap();
        assert_eq!(index("gsi1").projection_type, "INCLUDE");
        assert!(
            index("gsi1")
                .non_key_attributes
                .contains(&"studyDate".to_owned())
        );
        assert_eq!(index("gsi2").projection_type, "KEYS_ONLY");
    }

    #[test]
    fn local_names_follow_the_logical_ids() {
        assert_eq!(local_name("TenantsTable"), "pacs-hub-tenants");
        assert_eq!(local_name("AuditLogTable"), "pacs-hub-audit-log");
    }
}
