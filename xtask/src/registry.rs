//! `cargo xtask registry up|down`: a private image registry for the local cluster, the kind a
//! real one is: Debian's `docker-registry` (the CNCF distribution registry) on the cluster's
//! bridge at `10.123.0.1:5000`, behind **TLS** from a CA made here (every node's engine trusts
//! it through `/etc/docker/certs.d/10.123.0.1:5000/ca.crt`) and **htpasswd** (bcrypt) basic
//! auth. `up` pushes the test images into it: the busybox image as `app:1`, and `app:2` whose
//! content differs (a file more), so a digest change is visible; then removes them from the
//! engine that pushed, so every node starts without them. The credentials are written to
//! `target/registry/credentials.json` for the tests; `down` stops the registry and removes the
//! CA from the engines' trust.
//!
//! Needs the cluster up (`cargo xtask cluster up`): the registry listens on the bridge.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::packages::{self, Need};
use crate::{image, sh};

/// Where the engines reach it: the host's end of the cluster bridge.
pub const ADDRESS: &str = "10.123.0.1:5000";
pub const USERNAME: &str = "orchestrator-test";
/// The engine that pushes the test images.
const PUSHER: &str = "tcp://10.123.0.11:2375";

#[derive(clap::Subcommand)]
pub enum RegistryCommand {
    /// Start it (replacing an earlier one of ours) and push the test images.
    Up {
        /// Fail instead of installing missing system packages.
        #[arg(long)]
        no_install: bool,
    },
    /// Stop it and remove its data and the engines' trust in its CA.
    Down,
}

pub fn run(command: RegistryCommand) -> Result<()> {
    match command {
        RegistryCommand::Up { no_install } => up(no_install),
        RegistryCommand::Down => down(),
    }
}

pub fn state_dir() -> PathBuf {
    sh::workspace_root().join("target/registry")
}

/// Where dockerd looks for the CA of a registry (read at each pull: no restart needed).
fn trust_dir() -> PathBuf {
    PathBuf::from("/etc/docker/certs.d").join(ADDRESS)
}

/// A CA, and a server certificate for the registry's address signed by it: (CA PEM, server
/// certificate PEM, server key PEM).
fn certificates() -> Result<(String, String, String)> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "orchestrator test registry CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);
    let host = ADDRESS.split(':').next().unwrap_or(ADDRESS);
    let mut server = CertificateParams::new(vec![host.to_string()])?;
    server.distinguished_name.push(DnType::CommonName, host);
    server.use_authority_key_identifier_extension = true;
    let server_key = KeyPair::generate()?;
    let server_cert = server.signed_by(&server_key, &issuer)?;
    Ok((ca_cert.pem(), server_cert.pem(), server_key.serialize_pem()))
}

fn config(dir: &Path) -> String {
    format!(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {data}\n  delete:\n    enabled: true\n\
         http:\n  addr: {ADDRESS}\n  tls:\n    certificate: {dir}/server.crt\n    key: {dir}/server.key\n\
         auth:\n  htpasswd:\n    realm: orchestrator-test\n    path: {dir}/htpasswd\n",
        data = dir.join("data").display(),
        dir = dir.display()
    )
}

fn docker(args: &[&str], config: &Path) -> Result<String> {
    sh::output(Command::new("docker").arg("--config").arg(config).args(["-H", PUSHER]).args(args))
}

pub fn up(no_install: bool) -> Result<()> {
    packages::ensure(&[Need { program: "/usr/bin/docker-registry", package: "docker-registry" }], no_install)?;
    down()?;
    let dir = state_dir();
    std::fs::create_dir_all(dir.join("data"))?;
    let (ca, cert, key) = certificates().context("cannot make the registry's certificates")?;
    std::fs::write(dir.join("ca.crt"), &ca)?;
    std::fs::write(dir.join("server.crt"), cert)?;
    std::fs::write(dir.join("server.key"), key)?;
    let secret: [u8; 16] = rand::random();
    let password: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let hash = bcrypt::hash(&password, 10)?;
    std::fs::write(dir.join("htpasswd"), format!("{USERNAME}:{hash}\n"))?;
    std::fs::write(dir.join("config.yml"), config(&dir))?;
    let credentials = json!({"server": ADDRESS, "username": USERNAME, "password": password});
    std::fs::write(dir.join("credentials.json"), serde_json::to_string_pretty(&credentials)?)?;
    std::fs::create_dir_all(trust_dir())?;
    std::fs::write(trust_dir().join("ca.crt"), &ca)?;

    let log = std::fs::File::create(dir.join("registry.log"))?;
    let child = Command::new("/usr/bin/docker-registry")
        .arg("serve")
        .arg(dir.join("config.yml"))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("cannot start docker-registry")?;
    std::fs::write(dir.join("pid"), child.id().to_string())?;
    let started = Instant::now();
    // Up when it accepts connections on the bridge (the pushes below go through TLS and auth).
    let address: std::net::SocketAddr = ADDRESS.parse()?;
    while std::net::TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
        if started.elapsed() > Duration::from_secs(20) {
            bail!("the registry did not answer within 20 s (see {})", dir.join("registry.log").display());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    push_test_images(&dir, &password)?;
    println!(
        "registry up at https://{ADDRESS} (user {USERNAME}; credentials in {})",
        dir.join("credentials.json").display()
    );
    Ok(())
}

/// `app:1` is the busybox test image; `app:2` the same with a file more.
fn push_test_images(dir: &Path, password: &str) -> Result<()> {
    let config = dir.join("docker-client");
    std::fs::create_dir_all(&config)?;
    let mut login = Command::new("docker");
    login
        .arg("--config")
        .arg(&config)
        .args(["-H", PUSHER, "login", ADDRESS, "-u", USERNAME, "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        // Its warning about storing the login in that (throwaway) config is no news.
        .stderr(Stdio::null());
    let mut child = login.spawn()?;
    std::io::Write::write_all(child.stdin.as_mut().context("login's stdin")?, password.as_bytes())?;
    drop(child.stdin.take());
    if !child.wait()?.success() {
        bail!("docker login to the test registry failed");
    }
    let (one, two) = (format!("{ADDRESS}/app:1"), format!("{ADDRESS}/app:2"));
    docker(&["tag", image::TEST_IMAGE, &one], &config)?;
    let maker = "registry-app-2";
    let _ = docker(&["rm", "-f", maker], &config);
    docker(&["run", "--name", maker, image::TEST_IMAGE, "sh", "-c", "echo 2 > /version"], &config)?;
    docker(&["commit", maker, &two], &config)?;
    docker(&["rm", "-f", maker], &config)?;
    for tag in [&one, &two] {
        docker(&["push", tag], &config).with_context(|| format!("cannot push {tag}"))?;
        docker(&["rmi", tag], &config)?;
    }
    let _ = std::fs::remove_dir_all(&config);
    Ok(())
}

pub fn down() -> Result<()> {
    let dir = state_dir();
    if let Ok(pid) = std::fs::read_to_string(dir.join("pid")) {
        let pid = pid.trim();
        sh::quiet(Command::new("kill").arg(pid));
        let stop = Instant::now();
        while Path::new(&format!("/proc/{pid}")).exists()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
            && stop.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        sh::quiet(Command::new("kill").args(["-KILL", pid]));
        println!("registry stopped");
    }
    let _ = std::fs::remove_dir_all(trust_dir());
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(())
}
