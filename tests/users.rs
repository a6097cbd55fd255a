//! `ioclab users`: accounts from the shell, and a class at once.

mod common;

use common::run;

#[test]
fn users_add_list_reset_token_remove_and_a_class_sheet() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().to_str().unwrap();
    let (code, out, err) =
        run(&["users", "--data", data, "add", "alice", "--role", "instructor", "--password", "pw-1"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "alice (instructor) password: pw-1");
    let (code, _, err) = run(&["users", "--data", data, "add", "alice"]);
    assert_ne!(code, 0);
    assert!(err.contains("user alice already exists"), "{err}");
    let (code, _, err) = run(&["users", "--data", data, "add", "Bad<Name>"]);
    assert_ne!(code, 0);
    assert!(err.contains("invalid user name"), "{err}");

    let (code, out, err) = run(&["users", "--data", data, "add-class", "--count", "3", "--prefix", "blue"]);
    assert_eq!(code, 0, "{err}");
    let sheet: Vec<&str> = out.lines().collect();
    assert_eq!(sheet.len(), 4, "{out}");
    assert!(sheet[0].starts_with("LOGIN") && sheet[0].contains("PASSWORD"));
    for (i, line) in sheet[1..].iter().enumerate() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols[0], format!("blue-{:02}", i + 1));
        assert_eq!(cols[1].len(), 14, "a generated password: {line}");
    }
    assert_ne!(sheet[1].split_whitespace().nth(1), sheet[2].split_whitespace().nth(1));

    let (code, out, _) = run(&["users", "--data", data, "token", "blue-01"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("blue-01 API token: "), "{out}");
    let (_, out, _) = run(&["users", "--data", data, "list"]);
    let rows: Vec<Vec<&str>> = out.lines().skip(1).map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(
        rows,
        vec![
            vec!["alice", "instructor", "no"],
            vec!["blue-01", "trainee", "yes"],
            vec!["blue-02", "trainee", "no"],
            vec!["blue-03", "trainee", "no"]
        ]
    );
    let (code, out, _) = run(&["users", "--data", data, "reset-password", "blue-02"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("blue-02 password: "), "{out}");
    assert_eq!(run(&["users", "--data", data, "remove", "blue-03"]).0, 0);
    let (code, _, err) = run(&["users", "--data", data, "remove", "blue-03"]);
    assert_ne!(code, 0);
    assert!(err.contains("no user blue-03"), "{err}");
}
