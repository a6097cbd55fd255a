//! `ioclab lab schema`'s JSON Schema accepts every shipped scenario (as an
//! editor validating with it would) and rejects what the loader rejects.

use std::path::Path;

use ioclab_lab::scenario::{load, schema, ANSWERS_FILE, SCENARIO_FILE};

fn yaml_as_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml_ng::from_str(&text).unwrap()
}

fn dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../lab-scenarios")
}

#[test]
fn the_schema_accepts_every_shipped_scenario_and_answers() {
    let scenario = jsonschema::validator_for(&schema::scenario().to_value()).unwrap();
    let answers = jsonschema::validator_for(&schema::answers().to_value()).unwrap();
    let all = load::find(&dir()).unwrap();
    assert!(!all.is_empty());
    for d in all {
        let doc = yaml_as_json(&d.join(SCENARIO_FILE));
        let errors: Vec<String> =
            scenario.iter_errors(&doc).map(|e| format!("{} at {}", e, e.instance_path())).collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", d.display());
        let doc = yaml_as_json(&d.join(ANSWERS_FILE));
        let errors: Vec<String> =
            answers.iter_errors(&doc).map(|e| format!("{} at {}", e, e.instance_path())).collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", d.display());
    }
}

fn good_copy() -> serde_json::Value {
    yaml_as_json(&dir().join("dns-ioc-why-kunai-rocks").join(SCENARIO_FILE))
}

#[test]
fn the_schema_rejects_unknown_keys_and_bad_attack_ids() {
    let scenario = jsonschema::validator_for(&schema::scenario().to_value()).unwrap();
    let good = yaml_as_json(&dir().join("dns-ioc-why-kunai-rocks").join(SCENARIO_FILE));
    assert!(scenario.is_valid(&good));
    let mut extra = good.clone();
    extra["steps"][0]["triger"] = serde_json::json!("x");
    assert!(!scenario.is_valid(&extra), "unknown key accepted");
    let mut bad = good.clone();
    bad["attack"][0] = serde_json::json!("T1071.04");
    assert!(!scenario.is_valid(&bad), "bad ATT&CK id accepted");
    let mut level = good.clone();
    level["misp"]["threat_level"] = serde_json::json!(7);
    assert!(!scenario.is_valid(&level), "threat level 7 accepted");
    let mut absent = good;
    absent["expect"]["absent"] = serde_json::json!([{"value": "8.8.8.8"}]);
    assert!(scenario.is_valid(&absent), "expect.absent refused");
    absent["expect"]["absent"][0]["why"] = serde_json::json!("x");
    assert!(!scenario.is_valid(&absent), "unknown key in expect.absent accepted");
    let mut endpoint = good_copy();
    for (value, valid) in [("lab", true), ("trainee", true), ("laptop", false)] {
        endpoint["expect"]["endpoint"] = serde_json::json!(value);
        assert_eq!(scenario.is_valid(&endpoint), valid, "expect.endpoint: {value}");
    }
}
