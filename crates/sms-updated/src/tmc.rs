//! Client of the update centre's API (see `sms_sim::tmc` for the protocol).

use crate::net::{Net, NetError};
use crate::url::Url;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::Method;
use serde::Deserialize;
use sms_core::package::{Channel, PackageEntry};
use std::time::Duration;

/// Why an update centre request failed.
#[derive(Debug, thiserror::Error)]
pub enum TmcError {
    /// Network-level failure.
    #[error(transparent)]
    Net(#[from] NetError),
    /// The update centre answered with an error status.
    #[error("update centre answered {status} to {what}")]
    Status {
        /// What was asked.
        what: String,
        /// HTTP status.
        status: u16,
    },
    /// The answer could not be understood.
    #[error("update centre sent a malformed answer to {what}: {reason}")]
    Malformed {
        /// What was asked.
        what: String,
        /// What is wrong.
        reason: String,
    },
}

impl TmcError {
    /// Whether trying again later may help.
    pub fn is_transient(&self) -> bool {
        match self {
            TmcError::Net(NetError::Config(_)) | TmcError::Net(NetError::NoDnsServers { .. }) => {
                false
            }
            TmcError::Net(_) => true,
            TmcError::Status { status, .. } => *status >= 500 || *status == 429,
            TmcError::Malformed { .. } => false,
        }
    }
}

/// The update centre client.
#[derive(Clone)]
pub struct TmcClient {
    net: Net,
    base: Url,
    timeout: Duration,
    appliance_id: String,
}

#[derive(Deserialize)]
struct DownloadAnswer {
    url: String,
}

const MAX_ANSWER: usize = 16 << 20;

impl TmcClient {
    /// A client for `https://host:port`.
    pub fn new(
        net: Net,
        host: &str,
        port: u16,
        timeout: Duration,
        appliance_id: &str,
    ) -> Result<TmcClient, TmcError> {
        let base =
            Url::parse(&format!("https://{host}:{port}/")).map_err(|e| TmcError::Malformed {
                what: "configuration".into(),
                reason: e,
            })?;
        Ok(TmcClient {
            net,
            base,
            timeout,
            appliance_id: appliance_id.to_string(),
        })
    }

    /// The network path (shared with downloads).
    pub fn net(&self) -> &Net {
        &self.net
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
        what: &str,
    ) -> Result<Bytes, TmcError> {
        let mut url = self.base.clone();
        url.path = path.to_string();
        let (headers, body) = match body {
            Some(v) => (
                vec![("content-type", "application/json".to_string())],
                Bytes::from(serde_json::to_vec(&v).unwrap_or_default()),
            ),
            None => (Vec::new(), Bytes::new()),
        };
        let resp = self
            .net
            .request(method, &url, &headers, body, self.timeout)
            .await?;
        let status = resp.status().as_u16();
        let collect = http_body_util::Limited::new(resp.into_body(), MAX_ANSWER).collect();
        let bytes = tokio::time::timeout(self.timeout, collect)
            .await
            .map_err(|_| {
                TmcError::Net(NetError::Timeout {
                    what: format!("reading the answer to {what}"),
                    secs: self.timeout.as_secs_f64(),
                })
            })?
            .map_err(|e| {
                TmcError::Net(NetError::Http {
                    url: url.to_string(),
                    reason: e.to_string(),
                })
            })?
            .to_bytes();
        if !(200..300).contains(&status) {
            return Err(TmcError::Status {
                what: what.to_string(),
                status,
            });
        }
        Ok(bytes)
    }

    /// Fetches the signed catalog of `channel` (not yet verified).
    pub async fn catalog(&self, channel: Channel) -> Result<Bytes, TmcError> {
        self.call(
            Method::GET,
            &format!("/api/v1/catalog/{channel}"),
            None,
            &format!("the {channel} catalog request"),
        )
        .await
    }

    /// Asks where to download `entry`; returns the CDN URL.
    pub async fn download_url(&self, entry: &PackageEntry) -> Result<Url, TmcError> {
        let what = format!("the download request for {}", entry.key());
        let body = serde_json::json!({
            "channel": entry.channel,
            "version": entry.version,
            "family": entry.family,
        });
        let bytes = self
            .call(Method::POST, "/api/v1/download", Some(body), &what)
            .await?;
        let answer: DownloadAnswer =
            serde_json::from_slice(&bytes).map_err(|e| TmcError::Malformed {
                what: what.clone(),
                reason: e.to_string(),
            })?;
        Url::parse(&answer.url).map_err(|reason| TmcError::Malformed { what, reason })
    }

    /// Confirms to the update centre that `entry` arrived and verified.
    pub async fn confirm(&self, entry: &PackageEntry) -> Result<(), TmcError> {
        let body = serde_json::json!({
            "channel": entry.channel,
            "version": entry.version,
            "family": entry.family,
            "sha256": entry.sha256,
            "appliance": self.appliance_id,
        });
        self.call(
            Method::POST,
            "/api/v1/confirm",
            Some(body),
            &format!("the confirmation of {}", entry.key()),
        )
        .await
        .map(|_| ())
    }
}
