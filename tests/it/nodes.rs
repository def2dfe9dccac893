//! Node identity and liveness on one PostgreSQL catalog: every `evidenced run` registers its
//! node id, heartbeats, and shows as `alive`, `stopped` (clean stop) or `lost` (no heartbeat for
//! three intervals) at `GET /api/v1/nodes` and in `/metrics`; a second live process with the
//! same node id is refused at start.

use std::time::Duration;

use reqwest::Method;

use crate::harness::{Daemon, DaemonSpec, pg_database, wait_for};

/// A daemon on the shared catalog with a fast heartbeat.
fn node(dir: &std::path::Path, catalog_url: &str) -> Daemon {
    let mut spec = DaemonSpec::station(dir);
    spec.catalog_url = catalog_url.to_string();
    let d = Daemon::configure(dir, &spec);
    let cfg = std::fs::read_to_string(&d.config).unwrap().replace("[node]\n", "[node]\nheartbeat = \"300ms\"\n");
    std::fs::write(&d.config, cfg).unwrap();
    d
}

async fn states(d: &Daemon, token: &str) -> Vec<(String, String)> {
    let (s, v) = d.call(Method::GET, "/api/v1/nodes", token, None).await;
    assert_eq!(s, 200, "{v}");
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["id"].as_str().unwrap().to_string(), n["state"].as_str().unwrap().to_string()))
        .collect()
}

#[tokio::test]
async fn nodes_register_heartbeat_stop_and_get_lost() {
    let db = pg_database().await;
    let (da, db_, dc) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = node(da.path(), &db);
    let mut b = node(db_.path(), &db);
    let mut c = node(dc.path(), &db);
    let admin = a.token_create(&["--name", "root", "--role", "admin"]);
    a.start().await;
    b.start().await;
    c.start().await;
    let (ia, ib, ic) = (a.node_id(), b.node_id(), c.node_id());

    let mut want = vec![(ia.clone(), "alive".to_string()), (ib.clone(), "alive".into()), (ic.clone(), "alive".into())];
    want.sort();
    assert_eq!(states(&a, &admin).await, want);
    let (s, v) = a.call(Method::GET, "/api/v1/nodes", &admin, None).await;
    let first = &v["items"].as_array().unwrap().iter().find(|n| n["id"] == ia).unwrap().clone();
    assert_eq!((s, first["version"].as_str()), (200, Some(env!("CARGO_PKG_VERSION"))));
    assert_eq!(first["api_listen"], format!("127.0.0.1:{}", a.port));
    let (s, _) = a.call(Method::GET, "/api/v1/nodes", &a.token, None).await;
    assert_eq!(s, 403, "supervisors do not manage nodes");
    let metrics = a.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains(&format!("evidenced_node_info{{node=\"{ia}\"")), "{metrics}");
    assert!(metrics.contains("evidenced_nodes{state=\"alive\"} 3"), "{metrics}");

    // A second process with a live node's id is refused before it touches that node's leases.
    let cfg = std::fs::read_to_string(&c.config).unwrap().replace(&format!("id = \"{ic}\""), &format!("id = \"{ib}\""));
    let dup = dc.path().join("dup.toml");
    std::fs::write(&dup, cfg.replace(&format!("127.0.0.1:{}", c.port), &format!("127.0.0.1:{}", crate::harness::free_port()))).unwrap();
    let out = std::process::Command::new(crate::harness::bin())
        .arg("--config")
        .arg(&dup)
        .arg("run")
        .env_remove("NOTIFY_SOCKET")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains(&format!("node id \"{ib}\" is in use")) && err.contains("node.id"), "{err}");
    assert_eq!(states(&a, &admin).await.iter().find(|(id, _)| *id == ib).unwrap().1, "alive", "b is unharmed");

    // A clean stop shows as stopped; a kill -9 as lost after three missed beats.
    b.stop();
    c.kill9();
    wait_for("b stopped and c lost", Duration::from_secs(10), || {
        let (a, admin, ib, ic) = (&a, &admin, &ib, &ic);
        async move {
            let s = states(a, admin).await;
            let get = |id: &str| s.iter().find(|(i, _)| i == id).map(|(_, st)| st.clone());
            (get(ib).as_deref() == Some("stopped") && get(ic).as_deref() == Some("lost")).then_some(())
        }
    })
    .await;
    let metrics = a.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("evidenced_nodes{state=\"lost\"} 1"), "{metrics}");
    // The lost node comes back under its own id (its old instance is no longer alive).
    c.start().await;
    assert_eq!(states(&a, &admin).await.iter().find(|(id, _)| *id == ic).unwrap().1, "alive");
}
