//! Remote endpoints: the agent on a trainee's machine ships its events to
//! the class appliance (`ioclab agent --appliance URL --token T --fingerprint F`).
//!
//! [`wire`] is the format both sides speak (defined once: the appliance's
//! ingest in `ioclab-web` parses it with the same code); [`pin`] checks the
//! appliance's self-signed certificate against the fingerprint it printed;
//! [`spool`] keeps batches on disk until the appliance acknowledges them;
//! [`ship`] sends them; [`orders`] long-polls the appliance's orders (IoC
//! pushes) and applies them; [`synthetic`] makes events for tests and benches.

pub mod orders;
pub mod pin;
pub mod ship;
pub mod spool;
pub mod synthetic;
pub mod wire;
