//! The event types of Kunai's schema: numeric id, name, and whether ioclab
//! produces them yet and enables them by default.

use std::fmt;
use std::str::FromStr;

macro_rules! kinds {
    ($($variant:ident = $id:expr, $name:literal, produced: $produced:expr, default_on: $on:expr;)*) => {
        /// An event type (`info.event.id` / `info.event.name`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum EventKind { $(#[doc = $name] $variant,)* }

        impl EventKind {
            /// Every event type of Kunai's schema, in id order.
            pub const ALL: &'static [EventKind] = &[$(EventKind::$variant,)*];

            /// Kunai's numeric id.
            pub const fn id(self) -> u32 { match self { $(EventKind::$variant => $id,)* } }

            /// Kunai's name, as in `info.event.name` and the config's `events:` keys.
            pub const fn name(self) -> &'static str { match self { $(EventKind::$variant => $name,)* } }

            /// Whether this version of the agent produces the event.
            pub const fn produced(self) -> bool { match self { $(EventKind::$variant => $produced,)* } }

            /// Whether the event is enabled when the config does not say.
            pub const fn enabled_by_default(self) -> bool { match self { $(EventKind::$variant => $on,)* } }
        }

        impl FromStr for EventKind {
            type Err = UnknownEvent;
            fn from_str(s: &str) -> Result<Self, UnknownEvent> {
                match s { $($name => Ok(EventKind::$variant),)* _ => Err(UnknownEvent(s.to_string())) }
            }
        }
    };
}

kinds! {
    Execve = 1, "execve", produced: true, default_on: true;
    ExecveScript = 2, "execve_script", produced: true, default_on: true;
    Exit = 4, "exit", produced: true, default_on: true;
    ExitGroup = 5, "exit_group", produced: true, default_on: true;
    Clone = 6, "clone", produced: true, default_on: true;
    Prctl = 7, "prctl", produced: true, default_on: true;
    Kill = 8, "kill", produced: true, default_on: true;
    Ptrace = 9, "ptrace", produced: true, default_on: true;
    InitModule = 20, "init_module", produced: true, default_on: true;
    BpfProgLoad = 21, "bpf_prog_load", produced: true, default_on: true;
    BpfSocketFilter = 22, "bpf_socket_filter", produced: true, default_on: true;
    MprotectExec = 40, "mprotect_exec", produced: true, default_on: true;
    MmapExec = 41, "mmap_exec", produced: true, default_on: true;
    Connect = 60, "connect", produced: true, default_on: true;
    DnsQuery = 61, "dns_query", produced: true, default_on: true;
    SendData = 62, "send_data", produced: true, default_on: true;
    Read = 81, "read", produced: true, default_on: false;
    ReadConfig = 82, "read_config", produced: true, default_on: true;
    Write = 83, "write", produced: true, default_on: false;
    WriteConfig = 84, "write_config", produced: true, default_on: true;
    FileRename = 85, "file_rename", produced: true, default_on: true;
    FileUnlink = 86, "file_unlink", produced: true, default_on: true;
    WriteClose = 87, "write_close", produced: true, default_on: false;
    FileCreate = 88, "file_create", produced: true, default_on: true;
    IoUringSqe = 100, "io_uring_sqe", produced: false, default_on: true;
    FileScan = 500, "file_scan", produced: false, default_on: true;
    Error = 1000, "error", produced: true, default_on: true;
    EventLoss = 1100, "event_loss", produced: true, default_on: true;
    Start = 1101, "start", produced: true, default_on: true;
    // not Kunai's: ioclab says when its IoC set changed (a failed reload is an `error`)
    IocReload = 1102, "ioc_reload", produced: true, default_on: true;
}

impl EventKind {
    /// Events about the agent itself: always written, whatever the IoC filter says.
    pub const fn is_agent_event(self) -> bool {
        matches!(self, EventKind::Error | EventKind::EventLoss | EventKind::Start | EventKind::IocReload)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not one of Kunai's event types.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown event {0:?} (see `ioclab agent config --list-events`)")]
pub struct UnknownEvent(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_ids_are_unique() {
        let mut ids = std::collections::HashSet::new();
        for k in EventKind::ALL {
            assert_eq!(k.name().parse::<EventKind>().unwrap(), *k);
            assert!(ids.insert(k.id()), "duplicate id {}", k.id());
        }
        assert!("nope".parse::<EventKind>().is_err());
    }

    #[test]
    fn kunai_ids() {
        assert_eq!(EventKind::Execve.id(), 1);
        assert_eq!(EventKind::DnsQuery.id(), 61);
        assert_eq!(EventKind::Start.id(), 1101);
        assert!(!EventKind::Read.enabled_by_default());
        assert!(!EventKind::WriteClose.enabled_by_default());
    }
}
