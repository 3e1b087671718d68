//! A real mail store (on a private temporary directory) that IMAP fuzz bodies share across
//! runs, thrown away every [`STORE_RUNS_MAX`] runs so it cannot grow without bound. One per
//! thread.

use std::cell::RefCell;

use storaged::imap::backend::StoreBackend;
use storaged::mailstore::{Store, UserName};

/// Runs that share one store before it is thrown away (APPENDs make it grow).
const STORE_RUNS_MAX: u32 = 256;

pub(crate) struct Harness {
    pub rt: tokio::runtime::Runtime,
    dir: Option<tempfile::TempDir>,
    backend: Option<StoreBackend>,
    runs: u32,
}

thread_local! {
    pub(crate) static HARNESS: RefCell<Harness> = RefCell::new(Harness {
        rt: tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime"),
        dir: None,
        backend: None,
        runs: 0,
    });
}

pub(crate) fn user() -> UserName {
    UserName::parse("fuzz@example.edu").expect("valid user")
}

impl Harness {
    pub fn backend(&mut self) -> StoreBackend {
        if self.runs >= STORE_RUNS_MAX {
            self.backend = None;
            self.dir = None;
            self.runs = 0;
        }
        self.runs += 1;
        if let Some(b) = &self.backend {
            return b.clone();
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path().join("mail"), "g").expect("store");
        let backend = StoreBackend::new(store);
        self.dir = Some(dir);
        self.backend = Some(backend.clone());
        backend
    }
}
