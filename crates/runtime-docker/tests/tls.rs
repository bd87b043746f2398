//! `https://` engines with client certificates, with certificates made here: a CA, the
//! endpoint's certificate, a client certificate it signed, and one from another CA. The
//! endpoint is a real dockerd of the local cluster behind HAProxy terminating TLS with
//! `verify required` (the cluster's engines listen on plain TCP for the other tests): the
//! runtime's TLS client, its certificate handling and the Docker API over it are all real.

#![cfg(feature = "tls")]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use orchestrator_core::{
    ContainerRuntime, ContainerTemplate, DeploymentName, EngineAddress, ImageRef, Node, NodeName, ReplicaContainer,
    ReplicaId,
};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use runtime_docker::{DockerRuntime, DockerRuntimeConfig, TlsFiles};

use test_support::local_cluster::{TEST_IMAGE, nodes, unique_cluster_id};

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    Ca { cert: params.self_signed(&key).unwrap(), key }
}

/// A certificate signed by `ca`: (cert PEM, key PEM).
fn signed(ca: &Ca, name: &str, sans: Vec<String>, purpose: ExtendedKeyUsagePurpose) -> (String, String) {
    let mut params = CertificateParams::new(sans).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![purpose];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.cert, &ca.key).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

struct Haproxy(Child);

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn haproxy() -> Option<PathBuf> {
    ["/usr/sbin/haproxy", "/usr/bin/haproxy"].into_iter().map(PathBuf::from).find(|p| p.exists())
}

fn engine(address: &str) -> Node {
    Node::online(NodeName::new("secure").unwrap(), EngineAddress::parse(address).unwrap(), 10)
}

fn runtime(tls: Option<TlsFiles>) -> DockerRuntime {
    let mut config = DockerRuntimeConfig::new(unique_cluster_id("tls"));
    config.stop_grace = Duration::from_secs(1);
    config.tls = tls;
    DockerRuntime::new(config)
}

#[tokio::test]
async fn an_https_engine_with_client_certificates() {
    let Some(nodes) = nodes() else { return };
    let Some(haproxy) = haproxy() else {
        assert!(!test_support::required(), "HAProxy is not installed (Debian package haproxy)");
        eprintln!("skipping: HAProxy is not installed");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let trusted = ca("orchestrator test CA");
    let stranger = ca("someone else's CA");
    let (server_cert, server_key) =
        signed(&trusted, "engine", vec!["127.0.0.1".into(), "localhost".into()], ExtendedKeyUsagePurpose::ServerAuth);
    let (client_cert, client_key) = signed(&trusted, "orchestrator", vec![], ExtendedKeyUsagePurpose::ClientAuth);
    let (other_cert, other_key) = signed(&stranger, "intruder", vec![], ExtendedKeyUsagePurpose::ClientAuth);
    let ca_file = write(d, "ca.pem", &trusted.cert.pem());
    write(d, "server.pem", &format!("{server_cert}{server_key}"));
    let good = TlsFiles {
        cert: write(d, "client.pem", &client_cert),
        key: write(d, "client-key.pem", &client_key),
        ca: ca_file.clone(),
    };
    let bad =
        TlsFiles { cert: write(d, "other.pem", &other_cert), key: write(d, "other-key.pem", &other_key), ca: ca_file };

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let backend = nodes[0].tcp.trim_start_matches("tcp://").to_string();
    let config = format!(
        "global\n    maxconn 100\ndefaults\n    mode tcp\n    timeout connect 2s\n    timeout client 60s\n    timeout server 60s\n\
         frontend tls\n    bind 127.0.0.1:{port} ssl crt {} ca-file {} verify required\n    default_backend engine\n\
         backend engine\n    server node1 {backend}\n",
        d.join("server.pem").display(),
        d.join("ca.pem").display()
    );
    std::fs::write(d.join("haproxy.cfg"), config).unwrap();
    let _proxy = Haproxy(
        Command::new(haproxy).arg("-db").arg("-f").arg(d.join("haproxy.cfg")).stdout(Stdio::null()).spawn().unwrap(),
    );
    let node = engine(&format!("https://127.0.0.1:{port}"));
    let rt = runtime(Some(good));
    let mut answered = false;
    for _ in 0..50 {
        if rt.ping(&node).await.is_ok() {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(answered, "the engine over TLS with our client certificate");

    // The whole lifecycle over TLS.
    let replica = ReplicaContainer {
        deployment: DeploymentName::new("secure").unwrap(),
        replica: ReplicaId(1),
        revision: 1,
        template: ContainerTemplate::new(ImageRef::parse(TEST_IMAGE).unwrap())
            .with_command(vec!["sleep".into(), "3600".into()]),
        image_digest: None,
    };
    let id = rt.start_replica(&node, &replica).await.unwrap();
    let listed = rt.list_replicas(&node).await.unwrap();
    assert_eq!(listed.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), [id.as_str()]);
    rt.remove_replica(&node, &replica.deployment, replica.replica).await.unwrap();
    assert!(rt.list_replicas(&node).await.unwrap().is_empty());

    // A client certificate from another CA is refused; so is plain HTTP, and https without
    // any client certificate is a configuration error, not a silent downgrade.
    let refused = runtime(Some(bad)).ping(&node).await;
    assert!(refused.is_err(), "a certificate of another CA was accepted");
    let plain = runtime(None).ping(&engine(&format!("tcp://127.0.0.1:{port}"))).await;
    assert!(plain.is_err(), "plain HTTP reached the TLS endpoint");
    let unconfigured = runtime(None).ping(&node).await.unwrap_err();
    assert!(unconfigured.to_string().contains("client certificates"), "{unconfigured}");
}
