//! A fresh database per test: a temporary SQLite file, or a new database on the local
//! PostgreSQL of `cargo xtask pg` (found via target/pg/url, started when missing).

#[cfg(feature = "postgres")]
use std::process::Command;
#[cfg(feature = "postgres")]
use std::sync::OnceLock;

#[cfg(feature = "postgres")]
use test_support::{required, workspace_root};

pub enum TestDb {
    /// orchestrator-core's in-memory store: the fake other crates' tests run on.
    Memory(std::sync::Arc<orchestrator_core::memory::MemoryStore>),
    Sqlite {
        url: String,
        _dir: tempfile::TempDir,
    },
    #[cfg(feature = "postgres")]
    Postgres {
        url: String,
    },
}

impl TestDb {
    pub fn memory() -> Self {
        TestDb::Memory(std::sync::Arc::new(orchestrator_core::memory::MemoryStore::new()))
    }

    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("orchestrator.db").display());
        TestDb::Sqlite { url, _dir: dir }
    }

    /// A new, empty database on the local server; `None` (after saying why) when there is no
    /// server and the test may be skipped; a panic under CI.
    #[cfg(feature = "postgres")]
    pub fn postgres() -> Option<Self> {
        use diesel::connection::SimpleConnection;
        use diesel::{Connection, PgConnection};

        let server = server_url()?;
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let name = format!("t{}x{nanos:x}", std::process::id());
        let mut admin = PgConnection::establish(&server).expect("connect to the test PostgreSQL");
        admin.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        let url = format!("{}/{name}", server.rsplit_once('/').unwrap().0);
        Some(TestDb::Postgres { url })
    }

    pub fn url(&self) -> &str {
        match self {
            TestDb::Memory(_) => "memory",
            TestDb::Sqlite { url, .. } => url,
            #[cfg(feature = "postgres")]
            TestDb::Postgres { url } => url,
        }
    }
}

/// The server's URL (its `postgres` database), starting the server once if needed.
#[cfg(feature = "postgres")]
fn server_url() -> Option<String> {
    static URL: OnceLock<Result<String, String>> = OnceLock::new();
    let file = workspace_root().join("target/pg/url");
    let found = URL.get_or_init(|| {
        if let Ok(url) = std::fs::read_to_string(&file) {
            return Ok(url.trim().to_string());
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new(cargo)
            .current_dir(workspace_root())
            .args(["xtask", "pg", "up", "--no-install"])
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        std::fs::read_to_string(&file).map(|u| u.trim().to_string()).map_err(|e| e.to_string())
    });
    match found {
        Ok(url) => Some(url.clone()),
        Err(why) if required() => panic!("PostgreSQL is required here but unavailable: {why}"),
        Err(why) => {
            eprintln!("skipping: no local PostgreSQL ({why}); run `cargo xtask pg up`");
            None
        }
    }
}
