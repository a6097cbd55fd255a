//! Remote endpoints: trainee machines whose agents ship their events to the
//! appliance (`ioclab agent --appliance URL --token T --fingerprint F`).
//!
//! [`db`] holds the enrolment tokens (only their digests) and the events
//! received, in `web.db`; [`ingest`] is the HTTP API the agents post
//! batches to; [`tls`] is its listener, behind a self-signed certificate
//! made at first start that agents pin by fingerprint. The batch format is
//! the agent's (`ioclab_agent::remote::wire`): one definition for both sides.

pub mod db;
pub mod ingest;
pub mod tls;

pub use db::{EndpointDb, EndpointError, EnrolToken};
