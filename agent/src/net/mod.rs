//! Network facts computed in userspace: flow identity (Community ID),
//! whether an address is public, entropy of sent data, and DNS messages.

pub mod dns;
pub mod flow;

pub use flow::{community_id, entropy, ip_string, is_public, Proto};
