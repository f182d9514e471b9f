//! Database fixtures for tests (feature `testing`): every test gets its own database.

/// The PostgreSQL server tests may use, from `VIGIE_TEST_POSTGRES_URL`
/// (e.g. `postgres://postgres@127.0.0.1:5432/test`). With `VIGIE_REQUIRE_POSTGRES=1` (as CI
/// sets it) a missing URL is an error rather than a skipped backend.
pub fn postgres_server() -> Option<String> {
    let url = std::env::var("VIGIE_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty());
    if url.is_none() && std::env::var("VIGIE_REQUIRE_POSTGRES").as_deref() == Ok("1") {
        panic!("VIGIE_REQUIRE_POSTGRES=1 but VIGIE_TEST_POSTGRES_URL is not set");
    }
    url
}

/// Creates a fresh, empty database on the test PostgreSQL server and returns its URL, or
/// `None` when no server is configured.
pub async fn fresh_postgres_database() -> Option<String> {
    use rand::Rng;
    use sqlx::Connection;

    let server = postgres_server()?;
    let mut admin = sqlx::PgConnection::connect(&server)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test PostgreSQL at {server}: {e}"));
    let name = format!("vigie_test_{:016x}", rand::thread_rng().r#gen::<u64>());
    // The name is made here from hex digits only.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("CREATE DATABASE");
    admin.close().await.ok();
    let (base, _) = server.rsplit_once('/').expect("a URL with a database path");
    let query = server
        .split_once('?')
        .map(|(_, q)| format!("?{q}"))
        .unwrap_or_default();
    Some(format!("{base}/{name}{query}"))
}
