//! Fair admission: what keeps one client from starving the others. Before
//! authentication, a cap on the calls the server handles at once (health
//! checks always pass: an orchestrator must never see a busy replica as a
//! dead one) and, on TLS listeners, on the handshakes and connections one
//! address may hold (`peers`). After authentication, each principal's own
//! cap on calls in flight (`auth::in_flight`) and on change streams
//! (`lookup::watchers`).

mod layer;
pub mod peers;

pub use layer::AdmissionLayer;
