//! `palisade suspend` and `palisade reinstate`: terminating service to a site, and restoring
//! it. Who, when, why and the evidence go to the audit log with the change.

use super::{ApiArgs, cell, print_json};
use crate::admin_client::segment;
use anyhow::Result;
use serde_json::{Value, json};

/// `palisade suspend SITE --reason ... [--legal] [--report ID]...`.
#[derive(clap::Args, Debug)]
pub struct SuspendArgs {
    /// The site, by name.
    pub site: String,
    /// Why, for the audit log (required).
    #[arg(long)]
    pub reason: String,
    /// A legal demand (a court order, a statute): visitors get 451 instead of 403.
    #[arg(long)]
    pub legal: bool,
    /// An abuse report this suspension acts on (repeatable); it becomes `actioned`.
    #[arg(long = "report", value_name = "ID")]
    pub reports: Vec<i64>,
}

/// `palisade reinstate SITE [--reason ...]`.
#[derive(clap::Args, Debug)]
pub struct ReinstateArgs {
    /// The site, by name.
    pub site: String,
    /// Why, for the audit log.
    #[arg(long)]
    pub reason: Option<String>,
}

pub fn suspend(api: &ApiArgs, args: SuspendArgs) -> Result<()> {
    let client = api.client()?;
    let body = json!({ "reason": args.reason, "legal": args.legal, "reports": args.reports });
    let answer = client.post(
        &format!("/api/sites/{}/suspend", segment(&args.site)),
        &body,
    )?;
    if api.json {
        print_json(&answer);
    } else {
        let status = if args.legal { 451 } else { 403 };
        println!(
            "suspended site {}: its hosts answer {status} with the suspension notice; its origin \
             is not contacted",
            args.site
        );
        let reports = &answer["suspension"]["reports"];
        if reports.as_array().is_some_and(|r| !r.is_empty()) {
            println!("reports cited: {}", cell(Some(reports)));
        }
    }
    Ok(())
}

pub fn reinstate(api: &ApiArgs, args: ReinstateArgs) -> Result<()> {
    let client = api.client()?;
    let body = match &args.reason {
        Some(reason) => json!({ "reason": reason }),
        None => Value::Object(Default::default()),
    };
    let answer = client.post(
        &format!("/api/sites/{}/reinstate", segment(&args.site)),
        &body,
    )?;
    if api.json {
        print_json(&answer);
    } else {
        match answer.get("state") {
            Some(state) => println!("reinstated site {}: {}", args.site, cell(Some(state))),
            None => println!("reinstated site {}", args.site),
        }
    }
    Ok(())
}
