//! What the operator sees: Prometheus metrics, access logs, health and
//! readiness. Every call passes [`ObserveLayer`]; the live state is read
//! through [`Vitals`]; [`http`] serves it to Prometheus and orchestrators.

pub mod health;
pub mod http;
mod layer;
pub mod methods;
pub mod metrics;
pub mod summary;
pub mod vitals;

pub use layer::ObserveLayer;
pub use metrics::Metrics;
pub use vitals::Vitals;
