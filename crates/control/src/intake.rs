//! The edge's abuse intake hands checked reports here; they are stored with status `new`.

use crate::store::{self, Store, StoreError};
use edge::{ReportSink, SubmitError, SubmitFuture};
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
            let urgent = report.category.urgent();
            let category = report.category;
            let site = report.site.clone();
            let id = store
                .run(move |conn| -> Result<i64, StoreError> {
                    let tx = conn.transaction()?;
                    let id = store::reports::insert(&tx, &report, store::now_ms())?;
                    tx.commit()?;
                    Ok(id)
                })
                .await
                .map_err(|e| SubmitError::Store(Box::new(e)))?;
            if urgent {
                tracing::warn!(id, category = category.as_str(), site = ?site, "urgent abuse report");
            } else {
                tracing::info!(id, category = category.as_str(), site = ?site, "abuse report");
            }
            Ok(id as u64)
        })
    }
}
