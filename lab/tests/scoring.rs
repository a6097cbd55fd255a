//! The scoring engine on malicious-script-dropper's questions and the
//! hand-made recording (tests/fixtures/recording-dropper): each rule, each
//! unlock kind, attempts, hint costs, solution penalties, and answers taken
//! from a run's events differing between two runs.

use std::path::Path;

use ioclab_lab::run::{RunEvent, RunEventKind, RunFolder, StageResult};
use ioclab_lab::scenario::{load, AnswerRule, Loaded, Stage};
use ioclab_lab::scoring::{History, Quiz, RunData, ScoringError};
use proptest::prelude::*;
use serde_json::Value;

fn dropper() -> Loaded {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../lab-scenarios/malicious-script-dropper");
    load::load(&dir).expect("shipped scenario loads")
}

/// The fixture run: pid 4242 ran the detected script (4300 an undetected one).
fn run_a() -> RunData {
    RunData::read(&RunFolder::open(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/recording-dropper")))
        .unwrap()
}

/// Another run of the same scenario: other pids, other event uuids.
fn run_b() -> RunData {
    let a = run_a();
    let swap = |v: &Value| -> Value {
        let t = serde_json::to_string(v).unwrap().replace("4242", "5151").replace("4250", "5160");
        serde_json::from_str(&t).unwrap()
    };
    let timeline = a
        .timeline
        .iter()
        .map(|e| match &e.kind {
            RunEventKind::Detection { expected, event } => RunEvent {
                at_ms: e.at_ms,
                kind: RunEventKind::Detection { expected: expected.clone(), event: swap(event) },
            },
            _ => e.clone(),
        })
        .collect();
    let events = RunFolder::open(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/recording-dropper"))
        .events()
        .unwrap()
        .iter()
        .map(swap)
        .collect();
    RunData::new(timeline, events)
}

/// The fixture run's timeline cut just before the first event matching `stop`.
fn run_until(stop: impl Fn(&RunEventKind) -> bool) -> RunData {
    let a = run_a();
    let cut = a.timeline.iter().position(|e| stop(&e.kind)).expect("event in the fixture");
    RunData::new(a.timeline[..cut].to_vec(), Vec::new())
}

#[test]
fn exact_answers_are_trimmed_and_case_sensitive_only_when_asked() {
    let s = dropper();
    let q = Quiz::new(&s, run_a()).unwrap();
    let mut h = History::default();
    // case_sensitive: true
    assert!(!q.answer(&mut h, "stage2-path", "/TMP/.ioclab-dropper-stage2.sh").unwrap().right);
    assert!(q.answer(&mut h, "stage2-path", "  /tmp/.ioclab-dropper-stage2.sh\n").unwrap().right);

    let mut s = dropper();
    let a = s.answers.as_mut().unwrap().answers.get_mut(&"stage2-path".parse().unwrap()).unwrap();
    a.rule = AnswerRule::Exact { value: "/tmp/.ioclab-dropper-stage2.sh".into(), case_sensitive: false };
    let q = Quiz::new(&s, run_a()).unwrap();
    let mut h = History::default();
    assert!(q.answer(&mut h, "stage2-path", "/TMP/.IOCLAB-dropper-stage2.sh").unwrap().right);
}

#[test]
fn regex_answers_must_match_whole() {
    let s = dropper();
    let q = Quiz::new(&s, run_a()).unwrap();
    let mut h = History::default();
    assert!(!q.answer(&mut h, "beacon-domain", "update.dropper.lab.evil.example").unwrap().right);
    assert!(!q.answer(&mut h, "beacon-domain", "see update.dropper.lab").unwrap().right);
    let v = q.answer(&mut h, "beacon-domain", "Update.Dropper.lab.").unwrap();
    assert!(v.right && v.points == 10 && v.closed, "{v:?}");
}

#[test]
fn choice_answers_must_be_one_of_the_choices() {
    let s = dropper();
    let q = Quiz::new(&s, run_a()).unwrap();
    let mut h = History::default();
    let e = q.answer(&mut h, "why-unpublished", "publish it").unwrap_err();
    assert!(matches!(e, ScoringError::NotAChoice { .. }), "{e}");
    assert!(h.questions.is_empty(), "a non-choice is not an attempt");
    // one attempt only: a wrong choice closes the question
    let v = q.answer(&mut h, "why-unpublished", "Nothing, the agent reads MISP directly").unwrap();
    assert!(!v.right && v.closed && v.attempts_left == Some(0), "{v:?}");
    let e = q.answer(&mut h, "why-unpublished", "The event must be published, then the IoCs exported").unwrap_err();
    assert!(e.to_string().contains("no attempt left (1 allowed)"), "{e}");

    let mut h = History::default();
    let v = q.answer(&mut h, "why-unpublished", " the event must be published, THEN the iocs exported ").unwrap();
    assert!(v.right && v.points == 5, "{v:?}");
}

#[test]
fn event_answers_come_from_the_run_so_two_runs_have_different_answers() {
    let s = dropper();
    let (qa, qb) = (Quiz::new(&s, run_a()).unwrap(), Quiz::new(&s, run_b()).unwrap());
    let (mut ha, mut hb) = (History::default(), History::default());
    assert!(!qa.answer(&mut ha, "script-pid", "5151").unwrap().right, "run B's pid in run A");
    assert!(!qb.answer(&mut hb, "script-pid", "4242").unwrap().right, "run A's pid in run B");
    // 4300 ran a script too, but with no detection: `detected: true` leaves it out
    assert!(!qa.answer(&mut ha, "script-pid", "4300").unwrap().right);
    assert!(qa.answer(&mut ha, "script-pid", "4242").unwrap().right);
    assert!(qb.answer(&mut hb, "script-pid", " 5151 ").unwrap().right);
}

#[test]
fn a_picked_event_answers_by_its_uuid_when_the_rule_accepts_it() {
    let s = dropper();
    let q = Quiz::new(&s, run_a()).unwrap();
    let mut h = History::default();
    // the undetected script: a real event of the run, not one the rule accepts
    let v = q.answer(&mut h, "script-pid", "7e0c7a1e-5b3d-4c1a-9f00-000000004300").unwrap();
    assert!(!v.right && v.value.is_none(), "{v:?}");
    // the dns_query event: detected, but not an execve_script
    assert!(!q.answer(&mut h, "script-pid", "7e0c7a1e-5b3d-4c1a-9f00-000000004250").unwrap().right);
    let v = q.answer(&mut h, "script-pid", "7e0c7a1e-5b3d-4c1a-9f00-000000004242").unwrap();
    assert!(v.right && v.value.as_deref() == Some("4242"), "{v:?}");
    // run B has no event with run A's uuid
    let qb = Quiz::new(&s, run_b()).unwrap();
    assert!(!qb.answer(&mut History::default(), "script-pid", "7e0c7a1e-5b3d-4c1a-9f00-000000004242").unwrap().right);
}

#[test]
fn stage_unlocks_wait_for_the_stage_to_pass() {
    let s = dropper();
    let before = run_until(|k| matches!(k, RunEventKind::StageFinished { stage: Stage::Sandbox, .. }));
    let q = Quiz::new(&s, before).unwrap();
    let mut h = History::default();
    let e = q.answer(&mut h, "stage2-path", "/tmp/.ioclab-dropper-stage2.sh").unwrap_err();
    assert_eq!(e.to_string(), "question stage2-path is locked: waiting for the sandbox stage");
    assert!(q.hint(&mut h, "stage2-path", 0).is_err() && q.reveal_solution(&mut h, "stage2-path").is_err());
    assert_eq!(h, History::default(), "a locked question leaves no trace");
    let st = q.status(&h);
    assert!(!st[0].unlocked && st[0].waiting_for == ["the sandbox stage"], "{:?}", st[0]);
    assert!(q.unlocked().is_empty());

    // the sandbox stage failed: still locked; skipped: unlocked
    let mut failed = run_until(|k| matches!(k, RunEventKind::StageStarted { stage: Stage::Misp }));
    let mut skipped = failed.clone();
    for (run, result) in [
        (&mut failed, StageResult::Failed { reason: "x".into() }),
        (&mut skipped, StageResult::Skipped { reason: "y".into() }),
    ] {
        for e in &mut run.timeline {
            if let RunEventKind::StageFinished { result: r, .. } = &mut e.kind {
                *r = result.clone();
            }
        }
    }
    assert!(Quiz::new(&s, failed).unwrap().unlocked().is_empty());
    assert_eq!(Quiz::new(&s, skipped).unwrap().unlocked(), ["stage2-path".parse().unwrap()]);

    let all = Quiz::new(&s, run_a()).unwrap();
    assert!(all.answer(&mut h, "stage2-path", "/tmp/.ioclab-dropper-stage2.sh").unwrap().right);
}

#[test]
fn detection_unlocks_wait_for_the_expected_detection() {
    let s = dropper();
    let before = run_until(|k| matches!(k, RunEventKind::Detection { .. }));
    let q = Quiz::new(&s, before).unwrap();
    let e = q.answer(&mut History::default(), "script-pid", "4242").unwrap_err();
    assert!(matches!(e, ScoringError::Locked { .. }) && e.to_string().contains("the detection script-hash"), "{e}");
    assert!(!q.unlocked().iter().any(|id| id.as_str() == "script-pid"));
    // script-hash seen, beacon-lookup not yet
    let mid =
        run_until(|k| matches!(k, RunEventKind::Detection { expected, .. } if expected.as_str() == "beacon-lookup"));
    let ids: Vec<String> = Quiz::new(&s, mid).unwrap().unlocked().iter().map(|i| i.to_string()).collect();
    assert_eq!(ids, ["stage2-path", "why-unpublished", "script-pid"]);
    let v = Quiz::new(&s, run_a()).unwrap().answer(&mut History::default(), "script-pid", "1").unwrap();
    assert_eq!(v.unlocked.len(), 4, "every question shown at the end of the run");
}

#[test]
fn attempts_run_out_and_a_right_answer_closes_the_question() {
    let s = dropper();
    let q = Quiz::new(&s, run_a()).unwrap();
    let mut h = History::default();
    for left in [2, 1, 0] {
        let v = q.answer(&mut h, "stage2-path", "/tmp/wrong").unwrap();
        assert_eq!((v.right, v.points, v.attempts_left), (false, 0, Some(left)));
    }
    let e = q.answer(&mut h, "stage2-path", "/tmp/.ioclab-dropper-stage2.sh").unwrap_err();
    assert!(matches!(e, ScoringError::Closed { .. }) && e.to_string().contains("no attempt left (3 allowed)"), "{e}");
    assert_eq!(h.of(&"stage2-path".parse().unwrap()).tries(), 3, "a refused answer is not recorded");

    // unlimited attempts (beacon-domain): many wrong, then right, then closed
    for _ in 0..10 {
        assert_eq!(q.answer(&mut h, "beacon-domain", "x").unwrap().attempts_left, None);
    }
    assert!(q.answer(&mut h, "beacon-domain", "update.dropper.lab").unwrap().right);
    let e = q.answer(&mut h, "beacon-domain", "update.dropper.lab").unwrap_err();
    assert!(e.to_string().contains("answered right"), "{e}");
    assert_eq!(h.total(), 10);
}

#[test]
fn hints_cost_their_points_in_order_and_the_cost_is_known_before() {
    let s = dropper();
    let q = Quiz::new(&s, run_a()).unwrap();
    let mut h = History::default();
    let st = &q.status(&h)[0];
    assert_eq!((st.next_hint_cost, st.points_now, st.hints_total), (Some(3), 10, 1));
    let e = q.hint(&mut h, "stage2-path", 1).unwrap_err();
    assert!(matches!(e, ScoringError::NoSuchHint { next: 0, .. }), "{e}");
    let shown = q.hint(&mut h, "stage2-path", 0).unwrap();
    assert_eq!((shown.cost, shown.text.as_str()), (3, "Look at the report's dropped files."));
    // shown again: free
    q.hint(&mut h, "stage2-path", 0).unwrap();
    let st = &q.status(&h)[0];
    assert_eq!((st.hints_taken, st.next_hint_cost, st.points_now), (1, None, 7));
    let v = q.answer(&mut h, "stage2-path", "/tmp/.ioclab-dropper-stage2.sh").unwrap();
    assert_eq!(v.points, 7);
    assert_eq!(h.total(), 7);
}

#[test]
fn a_revealed_solution_costs_its_penalty_never_below_zero() {
    let s = dropper();
    let q = Quiz::new(&s, run_a()).unwrap();
    let mut h = History::default();
    // script-pid: 15 points, a hint costing 5, a solution costing 15
    assert_eq!(q.status(&h)[2].solution_penalty, Some(15));
    q.hint(&mut h, "script-pid", 0).unwrap();
    assert_eq!(q.status(&h)[2].points_now, 10);
    let sol = q.reveal_solution(&mut h, "script-pid").unwrap();
    assert_eq!(sol.penalty, 15);
    let v = q.answer(&mut h, "script-pid", "4242").unwrap();
    assert!(v.right && v.points == 0, "{v:?}");

    // stage2-path: 10 points, penalty 10, no hint: 0
    let mut h = History::default();
    q.reveal_solution(&mut h, "stage2-path").unwrap();
    assert_eq!(q.answer(&mut h, "stage2-path", "/tmp/.ioclab-dropper-stage2.sh").unwrap().points, 0);
    // no solution to reveal
    assert!(matches!(q.reveal_solution(&mut h, "why-unpublished"), Err(ScoringError::NoSolution(_))));
}

#[test]
fn unknown_questions_are_clear_errors_and_histories_round_trip() {
    let s = dropper();
    let q = Quiz::new(&s, run_a()).unwrap();
    let mut h = History::default();
    let e = q.answer(&mut h, "no-such-question", "x").unwrap_err();
    assert_eq!(e.to_string(), "no question \"no-such-question\" in this scenario");
    q.hint(&mut h, "stage2-path", 0).unwrap();
    q.answer(&mut h, "script-pid", "4242").unwrap();
    let json = serde_json::to_string(&h).unwrap();
    assert_eq!(serde_json::from_str::<History>(&json).unwrap(), h);
    let v = q.answer(&mut h, "beacon-domain", "update.dropper.lab").unwrap();
    let vj = serde_json::to_value(&v).unwrap();
    assert_eq!(vj["right"], true);
    assert_eq!(serde_json::from_value::<ioclab_lab::scoring::Verdict>(vj).unwrap(), v);
    let mut no_answers = dropper();
    no_answers.answers = None;
    assert!(matches!(Quiz::new(&no_answers, run_a()), Err(ScoringError::NoAnswers(_))));
}

proptest! {
    #[test]
    fn any_question_and_answer_give_a_verdict_or_an_error_never_a_panic(
        tries in proptest::collection::vec((0usize..6, ".{0,60}"), 1..12),
    ) {
        let s = dropper();
        let q = Quiz::new(&s, run_a()).unwrap();
        let ids = ["stage2-path", "why-unpublished", "script-pid", "beacon-domain", "", "x\u{0}y"];
        let mut h = History::default();
        for (i, answer) in &tries {
            let before = h.clone();
            match q.answer(&mut h, ids[*i], answer) {
                Ok(v) => prop_assert!(v.points <= 15),
                Err(_) => prop_assert_eq!(&h, &before),
            }
        }
        prop_assert!(h.total() <= 40);
    }
}
