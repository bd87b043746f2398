//! `LeaseStore` on diesel, and `fenced`: a store handle whose every write first checks (see
//! `fence`) that its holder still holds the lease at its term.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use diesel::prelude::*;
use orchestrator_core::{Lease, LeaseStore, NewEvent, Result};

use crate::events;
use crate::fence::{Fence, LeaseRow, load};
use crate::rows::{from_millis, to_millis};
use crate::schema::lease;
use crate::store::DieselStore;

fn to_lease((holder, term, expires_at_ms): LeaseRow) -> Lease {
    Lease { holder, term: u64::try_from(term).unwrap_or(0), expires_at: from_millis(expires_at_ms) }
}

impl DieselStore {
    /// A handle on the same database whose writes land only while `holder` holds the lease at
    /// `term`: what a leader gives its loops, so that, once paused past its lease and replaced,
    /// nothing it still had in flight can change the cluster.
    pub fn fenced(&self, holder: &str, term: u64) -> DieselStore {
        self.with_fence(Fence { holder: holder.to_string(), term: i64::try_from(term).unwrap_or(i64::MAX) })
    }
}

#[async_trait]
impl LeaseStore for DieselStore {
    async fn acquire_lease(&self, holder: &str, now: SystemTime, ttl: Duration) -> Result<Option<Lease>> {
        let (holder, now_ms) = (holder.to_string(), to_millis(now));
        let expires = to_millis(now + ttl);
        Ok(self
            .write_lease(move |conn| {
                let term = match load(conn)? {
                    None => {
                        diesel::insert_into(lease::table)
                            .values((
                                lease::singleton.eq(1),
                                lease::holder.eq(&holder),
                                lease::term.eq(1_i64),
                                lease::expires_at_ms.eq(expires),
                            ))
                            .execute(conn)?;
                        events::record(conn, &[NewEvent::leader_elected(&holder, 1)])?;
                        1
                    }
                    // Ours: renew (even if it lapsed meanwhile, nobody took it: same term).
                    Some((current, term, _)) if current == holder => term,
                    // Free: the next term.
                    Some((_, term, expires_at)) if expires_at <= now_ms => {
                        let next = term + 1;
                        events::record(conn, &[NewEvent::leader_elected(&holder, u64::try_from(next).unwrap_or(0))])?;
                        next
                    }
                    Some(_) => return Ok(None),
                };
                diesel::update(lease::table)
                    .set((lease::holder.eq(&holder), lease::term.eq(term), lease::expires_at_ms.eq(expires)))
                    .execute(conn)?;
                Ok(Some(to_lease((holder, term, expires))))
            })
            .await?)
    }

    async fn current_lease(&self) -> Result<Option<Lease>> {
        Ok(self.read(|conn| Ok(load(conn)?.map(to_lease))).await?)
    }

    async fn release_lease(&self, holder: &str, term: u64) -> Result<()> {
        let (holder, term) = (holder.to_string(), i64::try_from(term).unwrap_or(i64::MAX));
        Ok(self
            .write_lease(move |conn| {
                // Expired now: the next server takes it at once, with the next term.
                diesel::update(lease::table.filter(lease::holder.eq(&holder)).filter(lease::term.eq(term)))
                    .set(lease::expires_at_ms.eq(0_i64))
                    .execute(conn)?;
                Ok(())
            })
            .await?)
    }
}
