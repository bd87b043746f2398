//! One connection type for both backends, so every query is written once.
//!
//! diesel's `MultiConnection` covers what both backends support (here: text and integer
//! columns, RETURNING). What differs, opening, pragmas, migrations and how a write transaction
//! takes the database's write lock, is in `store`, matched on the variant.

#[derive(diesel::MultiConnection)]
pub enum AnyConnection {
    #[cfg(feature = "postgres")]
    Postgres(diesel::PgConnection),
    Sqlite(diesel::SqliteConnection),
}

/// Runs `$body` with `$c` bound to the inner connection, whichever it is: for the few queries
/// `MultiConnection` cannot express (a multi-row INSERT ... RETURNING).
macro_rules! each_backend {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::connection::AnyConnection::Sqlite($c) => $body,
            #[cfg(feature = "postgres")]
            $crate::connection::AnyConnection::Postgres($c) => $body,
        }
    };
}
pub(crate) use each_backend;
