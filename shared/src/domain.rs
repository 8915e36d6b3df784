//! The tenant domain: hospitals, their plans, status and settings, and the
//! roles a key can carry.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// A hospital's identifier: `hosp_` followed by 16 lowercase hex digits.
///
/// The identifier is the partition key, or its leading part, of every item
/// a hospital owns, and the second segment of every S3 key it owns.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HospitalId(String);

impl HospitalId {
    /// The prefix every id starts with.
    pub const PREFIX: &'static str = "hosp_";

    /// A fresh random id.
    pub fn generate() -> Self {
        HospitalId(format!(
            "{}{}",
            Self::PREFIX,
            hex::encode(rand::random::<[u8; 8]>())
        ))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 16 hex digits after the prefix.
    pub fn hex(&self) -> &str {
        &self.0[Self::PREFIX.len()..]
    }

    /// Parses an id from its 16 hex digits.
    pub fn from_hex(hex: &str) -> Option<Self> {
        format!("{}{hex}", Self::PREFIX).parse().ok()
    }
}

impl FromStr for HospitalId {
    type Err = ApiError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex = s.strip_prefix(Self::PREFIX).unwrap_or("");
        let ok = hex.len() == 16
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if ok {
            Ok(HospitalId(s.to_owned()))
        } else {
            Err(ApiError::validation(format!(
                "hospitalId {s:?} is malformed: expected hosp_ followed by 16 lowercase hex digits"
            )))
        }
    }
}

impl TryFrom<String> for HospitalId {
    type Error = ApiError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<HospitalId> for String {
    fn from(id: HospitalId) -> String {
        id.0
    }
}

impl fmt::Display for HospitalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A subscription plan and the limits it sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Plan {
    Basic,
    Professional,
    Enterprise,
}

impl Plan {
    /// How many users the plan allows.
    pub fn max_users(self) -> u32 {
        match self {
            Plan::Basic => 10,
            Plan::Professional => 50,
            Plan::Enterprise => 100,
        }
    }

    /// How many bytes of DICOM the plan allows (decimal gigabytes).
    pub fn max_storage_bytes(self) -> u64 {
        const GB: u64 = 1_000_000_000;
        match self {
            Plan::Basic => 100 * GB,
            Plan::Professional => 1_000 * GB,
            Plan::Enterprise => 10_000 * GB,
        }
    }

    /// The plan's name as the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Plan::Basic => "basic",
            Plan::Professional => "professional",
            Plan::Enterprise => "enterprise",
        }
    }
}

impl FromStr for Plan {
    type Err = ApiError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "basic" => Ok(Plan::Basic),
            "professional" => Ok(Plan::Professional),
            "enterprise" => Ok(Plan::Enterprise),
            _ => Err(ApiError::validation(format!(
                "plan {s:?} is unknown: use basic, professional or enterprise"
            ))),
        }
    }
}

/// Whether a hospital may use the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HospitalStatus {
    Active,
    Suspended,
}

impl HospitalStatus {
    /// The status as the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            HospitalStatus::Active => "active",
            HospitalStatus::Suspended => "suspended",
        }
    }
}

impl FromStr for HospitalStatus {
    type Err = ApiError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "active" => Ok(HospitalStatus::Active),
            "suspended" => Ok(HospitalStatus::Suspended),
            _ => Err(ApiError::validation(format!(
                "status {s:?} is unknown: use active or suspended"
            ))),
        }
    }
}

/// What a key of a hospital may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Uploads and heartbeats: the bridge agent.
    Agent,
    /// Queries and retrieves studies.
    Reader,
    /// Reader, plus management of its own hospital.
    Admin,
}

impl Role {
    /// The role as the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Reader => "reader",
            Role::Admin => "admin",
        }
    }

    /// Whether this role may read studies.
    pub fn can_read(self) -> bool {
        matches!(self, Role::Reader | Role::Admin)
    }

    /// Whether this role may upload.
    pub fn can_upload(self) -> bool {
        matches!(self, Role::Agent | Role::Admin)
    }
}

impl FromStr for Role {
    type Err = ApiError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "agent" => Ok(Role::Agent),
            "reader" => Ok(Role::Reader),
            "admin" => Ok(Role::Admin),
            _ => Err(ApiError::validation(format!(
                "role {s:?} is unknown: use agent, reader or admin"
            ))),
        }
    }
}

/// Settings a hospital's admin controls.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HospitalSettings {
    /// CIDR ranges requests may come from; empty means any.
    #[serde(default)]
    pub allowed_ips: Vec<String>,
    /// Whether the hospital's users must use multi-factor authentication in
    /// the clients that support it. Recorded and reported; API keys
    /// themselves are single-factor.
    #[serde(default, rename = "requireMFA")]
    pub require_mfa: bool,
    /// Days after which the hospital's studies may be deleted; `None` keeps
    /// them for ever.
    #[serde(default)]
    pub data_retention_days: Option<u32>,
}

impl HospitalSettings {
    /// Checks every field, naming the first that is wrong.
    pub fn validate(&self) -> Result<(), ApiError> {
        if self.allowed_ips.len() > 50 {
            return Err(ApiError::validation(
                "settings.allowedIPs holds at most 50 ranges",
            ));
        }
        for cidr in &self.allowed_ips {
            parse_cidr(cidr)?;
        }
        if let Some(days) = self.data_retention_days {
            if !(1..=36_500).contains(&days) {
                return Err(ApiError::validation(
                    "settings.dataRetentionDays must be between 1 and 36500",
                ));
            }
        }
        Ok(())
    }

    /// Whether `ip` may send requests. An empty list allows any address; an
    /// address that does not parse is refused whenever a list is set.
    pub fn allows_ip(&self, ip: &str) -> bool {
        if self.allowed_ips.is_empty() {
            return true;
        }
        let Ok(addr) = ip.trim().parse::<std::net::IpAddr>() else {
            return false;
        };
        self.allowed_ips
            .iter()
            .filter_map(|c| parse_cidr(c).ok())
            .any(|net| net.contains(&addr))
    }
}

/// Parses `10.0.0.0/8`, or a bare address as a single-host range.
pub fn parse_cidr(s: &str) -> Result<ipnet::IpNet, ApiError> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| {
            ApiError::validation(format!(
                "settings.allowedIPs entry {s:?} is not a CIDR range such as 10.1.0.0/16"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hospital_ids_round_trip_and_refuse_garbage() {
        let id = HospitalId::generate();
        assert_eq!(id.as_str().parse::<HospitalId>().unwrap(), id);
        assert_eq!(HospitalId::from_hex(id.hex()).unwrap(), id);
        for bad in [
            "",
            "hosp_",
            "hosp_0123",
            "hosp_0123456789ABCDEF",
            "x_0123456789abcdef",
        ] {
            assert!(bad.parse::<HospitalId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn allowed_ips_match_ranges() {
        let s = HospitalSettings {
            allowed_ips: vec!["10.1.0.0/16".into(), "192.0.2.7".into()],
            ..Default::default()
        };
        assert!(s.validate().is_ok());
        assert!(s.allows_ip("10.1.200.3"));
        assert!(s.allows_ip("192.0.2.7"));
        assert!(!s.allows_ip("10.2.0.1"));
        assert!(!s.allows_ip("not-an-ip"));
        assert!(HospitalSettings::default().allows_ip("203.0.113.9"));
    }

    #[test]
    fn plans_bound_users_and_storage() {
        assert_eq!(Plan::Basic.max_users(), 10);
        assert_eq!(Plan::Enterprise.max_storage_bytes(), 10_000_000_000_000);
        assert!("gold".parse::<Plan>().is_err());
    }
}
