//! `[[notify]]`: defaults, and every mistake reported at its line and column.

use std::path::Path;

use shipwatch_config::{JobEnd, NotifyFormat, load_str};

const TASKS: &str = r#"
[hosts]
web = ["web-01"]

[[tasks]]
name = "deploy"
hosts = ["web"]
transport = "local"
script = "true"
"#;

#[test]
fn a_hook_defaults_to_json_on_failed_and_lost_for_every_task() {
    let text = format!("{TASKS}\n[[notify]]\nurl = \"http://127.0.0.1:9/hook\"\n");
    let config = load_str(&text, "shipwatch.toml", Path::new("/srv")).unwrap();
    let hook = &config.notify[0];
    assert_eq!(hook.on, vec![JobEnd::Failed, JobEnd::Lost]);
    assert_eq!(hook.format, NotifyFormat::Json);
    assert!(hook.wants("deploy", "failed") && hook.wants("other", "lost"));
    assert!(!hook.wants("deploy", "succeeded"));
    let none = load_str(TASKS, "shipwatch.toml", Path::new("/srv")).unwrap();
    assert!(none.notify.is_empty(), "no webhooks unless configured");
}

#[test]
fn a_hook_limited_to_tasks_and_ends_wants_only_those() {
    let text = format!(
        "{TASKS}\n[[notify]]\nurl = \"https://hooks.slack.com/services/T1/B2/x\"\non = [\"succeeded\", \"cancelled\"]\nformat = \"slack\"\ntasks = [\"deploy\"]\n"
    );
    let config = load_str(&text, "shipwatch.toml", Path::new("/srv")).unwrap();
    let hook = &config.notify[0];
    assert_eq!(hook.format, NotifyFormat::Slack);
    assert!(hook.wants("deploy", "succeeded") && hook.wants("deploy", "cancelled"));
    assert!(!hook.wants("deploy", "failed") && !hook.wants("other", "succeeded"));
}

#[test]
fn every_mistake_in_a_hook_is_reported_with_line_and_column() {
    let text = format!(
        "{TASKS}\n[[notify]]\nurl = \"hooks.slack.com/x\"\non = [\"failed\", \"exploded\"]\nformat = \"xml\"\ntasks = [\"nope\"]\ncolour = 1\n"
    );
    let errors = match load_str(&text, "shipwatch.toml", Path::new("/srv")) {
        Ok(_) => panic!("accepted"),
        Err(e) => e.0.iter().map(ToString::to_string).collect::<Vec<_>>(),
    };
    assert_eq!(
        errors,
        [
            "shipwatch.toml:16:1: notify: unknown key `colour`, expected one of `url`, `on`, `format`, `tasks`"
        ]
    );
    let text = text.replace("colour = 1\n", "");
    let errors = match load_str(&text, "shipwatch.toml", Path::new("/srv")) {
        Ok(_) => panic!("accepted"),
        Err(e) => e.0.iter().map(ToString::to_string).collect::<Vec<_>>(),
    };
    assert_eq!(errors.len(), 4, "{errors:#?}");
    assert!(errors[0].starts_with("shipwatch.toml:12:7: notify[0].url = \"hooks.slack.com/x\": expected an http:// or https:// URL"), "{errors:#?}");
    assert!(
        errors[1]
            .starts_with("shipwatch.toml:13:17: notify[0].on = \"exploded\": expected succeeded"),
        "{errors:#?}"
    );
    assert!(
        errors[2].starts_with("shipwatch.toml:14:10: notify[0].format = \"xml\""),
        "{errors:#?}"
    );
    assert_eq!(
        errors[3],
        "shipwatch.toml:15:10: notify[0].tasks: no task named \"nope\""
    );
}
