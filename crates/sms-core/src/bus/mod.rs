//! The D-Bus control plane: names, typed proxies and payload records.
//!
//! The daemons expose their operations on the system bus; the admin CLI and
//! the other daemons call them through the `#[zbus::proxy]` traits here
//! (`Updater1Proxy`, `Distributor1Proxy`, `Ntp1Proxy`, `Snmp1Proxy`,
//! `Ha1Proxy`), so a
//! renamed method or field fails to compile instead of showing an empty
//! column. Structured results travel as JSON strings ([`Json`]), so that
//! `busctl` and scripts see one readable schema; the types below are that
//! schema. A new daemon adds its module here: names, proxy, records.

pub mod distributor;
pub mod ha;
pub mod ntp;
pub mod snmp;
pub mod store;
pub mod updater;

pub use distributor::*;
pub use ha::*;
pub use ntp::*;
pub use snmp::*;
pub use store::*;
pub use updater::*;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zbus::zvariant::{Signature, Type};

/// A record carried on the bus as a JSON string (D-Bus signature `s`).
///
/// Servers answer `Json(record)`; proxies declare `Json<Record>` as their
/// answer and get the record parsed, or a `zbus` error naming what did
/// not fit.
#[derive(Debug, Clone, PartialEq)]
pub struct Json<T>(pub T);

impl<T> Json<T> {
    /// The record.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> Type for Json<T> {
    const SIGNATURE: &'static Signature = &Signature::Str;
}

impl<T: Serialize> Serialize for Json<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let text = serde_json::to_string(&self.0).map_err(serde::ser::Error::custom)?;
        s.serialize_str(&text)
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Json<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        serde_json::from_str(&text)
            .map(Json)
            .map_err(|e| serde::de::Error::custom(format!("JSON answer: {e}")))
    }
}

/// Emits a signal for every event a daemon broadcasts, for as long as the
/// daemon runs: `emit` turns one event into its signal on the object at
/// `path`. A slow bus skips the events it lagged behind (logged); a
/// failed emission is logged and the next event goes on.
pub fn forward_signals<E, F, Fut>(
    conn: &zbus::Connection,
    path: &'static str,
    mut events: tokio::sync::broadcast::Receiver<E>,
    emit: F,
) -> zbus::Result<()>
where
    E: Clone + Send + 'static,
    F: Fn(zbus::object_server::SignalEmitter<'static>, E) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = zbus::Result<()>> + Send,
{
    let emitter = zbus::object_server::SignalEmitter::new(conn, path)?.into_owned();
    tokio::spawn(async move {
        loop {
            let ev = match events.recv().await {
                Ok(ev) => ev,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!("{n} event(s) not signalled on {path}: the bus was behind");
                    continue;
                }
                Err(_) => break,
            };
            if let Err(e) = emit(emitter.clone(), ev).await {
                tracing::warn!("emitting a D-Bus signal on {path}: {e}");
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_crosses_the_bus_as_a_json_string() {
        let ctxt = zbus::zvariant::serialized::Context::new_dbus(zbus::zvariant::LE, 0);
        let status = UpdaterStatus {
            active_dv: Some("1.2.3".into()),
            ..UpdaterStatus::default()
        };
        let bytes = zbus::zvariant::to_bytes(ctxt, &Json(status.clone())).unwrap();
        let text: String = bytes.deserialize().unwrap().0;
        assert!(text.contains("\"active_dv\":\"1.2.3\""), "{text}");
        let back: Json<UpdaterStatus> = bytes.deserialize().unwrap().0;
        assert_eq!(back.0, status);
        let other = zbus::zvariant::to_bytes(ctxt, &"{\"active_dv\": 5}").unwrap();
        let e = other.deserialize::<Json<UpdaterStatus>>().unwrap_err();
        assert!(e.to_string().contains("JSON answer"), "{e}");
    }
}
