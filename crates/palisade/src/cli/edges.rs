//! `palisade edges`: the nodes of the cluster as the control node's API sees them.

use super::{ApiArgs, cell, print_json, time_cell};
use crate::table::Table;
use anyhow::Result;
use serde_json::Value;

pub fn run(api: &ApiArgs) -> Result<()> {
    let answer = api.client()?.get("/api/edges")?;
    if api.json {
        print_json(&answer);
        return Ok(());
    }
    if answer["cluster"] == Value::Bool(false) {
        println!("this node is not in a cluster (no [cluster] table): it is its only edge");
        return Ok(());
    }
    print!("{}", edges_table(&answer));
    Ok(())
}

fn edges_table(answer: &Value) -> String {
    let mut table = Table::new(&[
        "NODE",
        "ROLE",
        "VERSION",
        "CONFIG",
        "LAG",
        "LAST HEARTBEAT",
        "REQ/S",
        "CONNECTED",
    ]);
    for node in answer["edges"].as_array().into_iter().flatten() {
        let lag = match (node["lag_versions"].as_u64(), node["lag_seconds"].as_f64()) {
            (Some(0), _) | (None, _) => "-".to_string(),
            (Some(versions), Some(seconds)) => format!("{versions} ({seconds:.1}s)"),
            (Some(versions), None) => versions.to_string(),
        };
        table.row([
            cell(node.get("node")),
            cell(node.get("role")),
            cell(node.get("version")),
            cell(node.get("config_version")),
            lag,
            time_cell(node.get("last_heartbeat")),
            cell(node.get("requests_per_second")),
            if node["connected"] == Value::Bool(true) {
                "yes".to_string()
            } else {
                "no".to_string()
            },
        ]);
    }
    table.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_node_behind_shows_its_lag_and_a_silent_one_is_not_connected() {
        let text = edges_table(&json!({"cluster": true, "edges": [
            {"node": "control-1", "role": "control", "version": "0.1.0", "config_version": 9,
             "lag_versions": 0, "lag_seconds": 0.0, "last_heartbeat": 1796684339823u64,
             "requests_per_second": 12.5, "connected": true},
            {"node": "edge-fra-1", "role": "edge", "version": "0.1.0", "config_version": 7,
             "lag_versions": 2, "lag_seconds": 3.25, "last_heartbeat": 1796684330000u64,
             "requests_per_second": 0.0, "connected": false},
        ]}));
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("NODE"), "{text}");
        assert!(
            lines[1].contains("control-1") && lines[1].contains("yes"),
            "{text}"
        );
        assert!(
            lines[2].contains("2 (3.2s)") || lines[2].contains("2 (3.3s)"),
            "{text}"
        );
        assert!(lines[2].trim_end().ends_with("no"), "{text}");
    }
}
