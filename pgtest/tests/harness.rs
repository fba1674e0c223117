//! The harness itself: a private server that takes queries, survives a crash and a
//! restart with its committed rows, and gives each test its own database.

use shipwatch_pgtest::Postgres;

#[test]
fn a_private_server_keeps_committed_rows_across_a_crash() {
    let pg = Postgres::start();
    let url = pg.database();
    let db = url.rsplit('/').next().unwrap();
    pg.psql(db, "CREATE TABLE t (n int); INSERT INTO t VALUES (1), (2)");
    assert_eq!(pg.psql(db, "SELECT sum(n) FROM t"), "3");
    pg.kill();
    pg.resume();
    assert_eq!(pg.psql(db, "SELECT sum(n) FROM t"), "3");
    let other = pg.database();
    assert_ne!(other, url, "each call is a new database");
    let port = pg.port;
    drop(pg);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the server stops with its handle"
    );
}
