//! `[store] url = "postgres://…"` on the real binary (DESIGN §11): `shipwatch up` keeps
//! its jobs, hosts and every line in a private PostgreSQL server rather than the SQLite
//! file of `data_dir`, and a restarted `up` finds them there.

mod e2e_support;
mod support;

use std::time::Duration;

use e2e_support::*;
use serde_json::json;
use support::*;

const TASK: &str = r#"[[tasks]]
name = "greet"
hosts = ["fleet"]
transport = "local"
batch = 2
script = '''
for i in 1 2 3; do echo "line $i from $SHIPWATCH_HOST"; done
echo "warning from $SHIPWATCH_HOST" >&2
'''
"#;

#[test]
fn a_job_runs_on_a_postgres_store_and_outlives_a_restart_of_up() {
    let pg = shipwatch_pgtest::Postgres::start();
    let url = pg.database();
    let setup = Setup::new("");
    let store = format!("{TASK}\n[store]\nurl = \"{url}\"\n");
    setup.write_raw(&config_text(&setup, "runners = 2", 5, &store));
    let up = Guard(setup.up(&[]));
    setup.wait_status("all running", |s| s.all_running(2));

    let id = create_job(setup.port, &json!({"task": "greet"}));
    let done = wait_job(
        setup.port,
        id,
        Duration::from_secs(60),
        "its end",
        is_terminal,
    );
    assert_eq!(done["state"], "succeeded", "{done:#}");
    assert_eq!(done["counts"]["ok"], 5, "{done:#}");
    let log = stored_log(setup.port, id);
    assert_gapless(&log);
    let lines = log.iter().filter(|e| e.kind == "line").count();
    assert_eq!(lines, 5 * 4, "3 stdout lines and 1 stderr line per host");

    // The rows are PostgreSQL's, and no SQLite file was made.
    let db = url.rsplit('/').next().unwrap();
    let stored = pg.psql(db, &format!("SELECT count(*) FROM events WHERE job = {id}"));
    assert_eq!(stored, log.len().to_string());
    assert!(!setup.dir.path().join("data/shipwatch.db").exists());

    drop(up);
    let _up = Guard(setup.up(&[]));
    setup.wait_status("all running again", |s| s.all_running(2));
    let again = job(setup.port, id);
    assert_eq!(again["state"], "succeeded", "{again:#}");
    assert_eq!(stored_log(setup.port, id).len(), log.len());
    let audit = get_json(setup.port, "/api/audit");
    assert!(
        audit.to_string().contains("greet"),
        "the start was audited in PostgreSQL: {audit}"
    );
}
