//! The local stand-ins for Secrets Manager and IAM: the key pepper, the
//! platform-admin key and the S3 credentials, made once on first start and
//! kept in the data dir (each file mode 0600), never regenerated.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::StartError;

/// What the functions read through `SECRETS_FILE`.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SecretsFile {
    pepper: String,
    platform_admin_key: String,
}

/// The access key the embedded S3 server accepts, and that every local
/// SDK client and presigned URL signs with.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct S3Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

/// The secrets of a data dir.
pub struct StoredSecrets {
    pub platform_admin_key: String,
    pub s3: S3Credentials,
}

pub fn secrets_path(data_dir: &Path) -> PathBuf {
    data_dir.join("secrets.json")
}

pub fn admin_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("platform-admin.key")
}

fn credentials_path(data_dir: &Path) -> PathBuf {
    data_dir.join("s3-credentials.json")
}

/// Reads the data dir's secrets, creating those that do not exist yet.
pub fn ensure(data_dir: &Path) -> Result<StoredSecrets, StartError> {
    let secrets: SecretsFile = load_or_create(&secrets_path(data_dir), || SecretsFile {
        pepper: hex::encode(rand::random::<[u8; 32]>()),
        platform_admin_key: pacs_shared::auth::new_platform_key(),
    })?;

    // The key file is for people and scripts; the secrets file stays the
    // one the functions trust.
    let key_path = admin_key_path(data_dir);
    if !key_path.exists() {
        write_private(
            &key_path,
            format!("{}\n", secrets.platform_admin_key).as_bytes(),
        )?;
    }

    let s3 = load_or_create(&credentials_path(data_dir), || S3Credentials {
        access_key_id: format!("PACSLOCAL{}", hex::encode_upper(rand::random::<[u8; 6]>())),
        secret_access_key: hex::encode(rand::random::<[u8; 20]>()),
    })?;

    Ok(StoredSecrets {
        platform_admin_key: secrets.platform_admin_key,
        s3,
    })
}

fn load_or_create<T: Serialize + for<'de> Deserialize<'de>>(
    path: &Path,
    make: impl FnOnce() -> T,
) -> Result<T, StartError> {
    if path.exists() {
        let text = std::fs::read_to_string(path).map_err(|source| StartError::DataDir {
            path: path.to_owned(),
            source,
        })?;
        return serde_json::from_str(&text).map_err(|e| StartError::Secrets {
            path: path.to_owned(),
            reason: e.to_string(),
        });
    }
    let value = make();
    let text = serde_json::to_vec_pretty(&value).expect("secrets serialise");
    write_private(path, &text)?;
    Ok(value)
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), StartError> {
    let fail = |source| StartError::DataDir {
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(fail)?;
    file.write_all(bytes).map_err(fail)?;
    file.sync_all().map_err(fail)
}
