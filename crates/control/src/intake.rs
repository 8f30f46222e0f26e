//! The edge's abuse intake hands checked reports here; they are stored with status `new`. On a
//! cluster's control node, reports taken at the other edges arrive here too (with the receipt
//! their edge gave them, so one delivered twice is stored once).

use crate::store::{self, Store, StoreError};
use edge::{Receipt, ReportSink, SubmitError, SubmitFuture};
use model::NewReport;

/// The [`ReportSink`] the control plane installs: each report becomes a row with status `new`.
pub struct StoreSink {
    /// Where reports are stored.
    pub store: Store,
}

impl ReportSink for StoreSink {
    fn submit(&self, report: NewReport) -> SubmitFuture {
        let store = self.store.clone();
        Box::pin(async move {
            let id = store_report(&store, report, None)
                .await
                .map_err(|e| SubmitError::Store(Box::new(e)))?;
            Ok(Receipt::Stored(id as u64))
        })
    }
}

/// Stores `report` (once per `receipt`, when it has one) and logs it; returns its id.
pub async fn store_report(
    store: &Store,
    report: NewReport,
    receipt: Option<String>,
) -> Result<i64, StoreError> {
    let urgent = report.category.urgent();
    let category = report.category;
    let site = report.site.clone();
    let id = store
        .run(move |conn| -> Result<i64, StoreError> {
            let tx = conn.transaction()?;
            let now = store::now_ms();
            let id = match &receipt {
                Some(receipt) => store::reports::insert_received(&tx, &report, receipt, now)?,
                None => store::reports::insert(&tx, &report, now)?,
            };
            tx.commit()?;
            Ok(id)
        })
        .await?;
    if urgent {
        tracing::warn!(id, category = category.as_str(), site = ?site, "urgent abuse report");
    } else {
        tracing::info!(id, category = category.as_str(), site = ?site, "abuse report");
    }
    Ok(id)
}
