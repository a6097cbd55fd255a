//! How a scenario's sandbox report becomes a MISP event: the scenario's
//! part of the sandbox's `[reporting.misp]` settings.

use ioclab_intel::model::levels::{Analysis, Distribution, ThreatLevel};
use ioclab_sandbox::misp::config::{List, ReportingMisp};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

/// The MISP event settings of a scenario (the rest of `[reporting.misp]`,
/// where MISP is and how to log in, belongs to the appliance).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct MispSettings {
    /// Tags attached to the event.
    pub tags: Vec<String>,
    /// Who may see the event: 0 your organisation, 1 this community, 2 connected communities, 3 all, 4 a sharing group.
    #[schemars(schema_with = "level_schema::<Distribution>")]
    pub distribution: Distribution,
    /// Threat level: 1 high, 2 medium, 3 low, 4 undefined.
    #[schemars(schema_with = "level_schema::<ThreatLevel>")]
    pub threat_level: ThreatLevel,
    /// Analysis state: 0 initial, 1 ongoing, 2 completed.
    #[schemars(schema_with = "level_schema::<Analysis>")]
    pub analysis: Analysis,
    /// Publish at once; `false` leaves the event for an instructor to review and publish.
    pub publish: bool,
    /// Leave out values on MISP warninglists.
    pub warninglists: bool,
    /// Send the paths of dropped files as IDS attributes, so the export
    /// carries them as path IoCs (off by default, as in the sandbox).
    pub dropped_path_ids: bool,
}

impl Default for MispSettings {
    fn default() -> Self {
        let d = ReportingMisp::default();
        MispSettings {
            tags: vec!["ioclab:lab".to_string()],
            distribution: d.distribution,
            threat_level: d.threat_level,
            analysis: d.analysis,
            publish: d.publish,
            warninglists: d.warninglists,
            dropped_path_ids: d.dropped_path_ids,
        }
    }
}

impl MispSettings {
    /// The sandbox's reporting settings with this scenario's applied.
    pub fn apply(&self, base: &ReportingMisp) -> ReportingMisp {
        ReportingMisp {
            tag: List(self.tags.clone()),
            distribution: self.distribution,
            threat_level: self.threat_level,
            analysis: self.analysis,
            publish: self.publish,
            warninglists: self.warninglists,
            dropped_path_ids: self.dropped_path_ids,
            ..base.clone()
        }
    }
}

/// A MISP level's schema: its numbers, taken from the enum itself.
trait Level: Copy + 'static {
    const ALL: &'static [Self];
    fn number(self) -> i64;
}

macro_rules! level {
    ($($t:ty),*) => {$(
        impl Level for $t {
            const ALL: &'static [Self] = <$t>::ALL;
            fn number(self) -> i64 { self.id() }
        }
    )*};
}
level!(Distribution, ThreatLevel, Analysis);

fn level_schema<T: Level>(_: &mut SchemaGenerator) -> Schema {
    let numbers: Vec<i64> = T::ALL.iter().map(|v| v.number()).collect();
    schemars::json_schema!({ "type": "integer", "enum": numbers })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_sets_the_event_settings_and_keeps_the_connection() {
        let base = ReportingMisp { url: "http://127.0.0.1:9999".into(), ..ReportingMisp::default() };
        let s = MispSettings {
            tags: vec!["a".into()],
            threat_level: ThreatLevel::High,
            publish: true,
            dropped_path_ids: true,
            ..MispSettings::default()
        };
        let r = s.apply(&base);
        assert_eq!(
            (r.url.as_str(), r.tag.0.as_slice(), r.threat_level, r.publish, r.dropped_path_ids),
            ("http://127.0.0.1:9999", &["a".to_string()][..], ThreatLevel::High, true, true)
        );
        assert!(!MispSettings::default().apply(&base).dropped_path_ids, "off unless the scenario asks");
    }
}
