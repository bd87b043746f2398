//! The command line (clap): `serve`, and the client commands.

use anyhow::Result;
use clap::{CommandFactory, Parser, Subcommand};

use crate::client::{ClientArgs, WaitArgs};
use crate::workload_args::WorkloadArgs;
use crate::{client, config, rollout_cli, serve};
use serde_json::json;

#[derive(Parser)]
#[command(name = "orchestrator", version, about = "A small container orchestrator for Docker engines")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the control plane: API, heartbeat, rebalancer, reconciler.
    Serve(Box<config::ServeArgs>),
    /// Show every node and deployment.
    Status(ClientArgs),
    /// Manage deployments.
    #[command(subcommand)]
    Deploy(DeployCommand),
    /// Print what a deployment's replicas print, merged (`replica@node | line`).
    Logs(crate::logs_cli::LogsArgs),
    /// Manage nodes.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Manage the registry logins engines pull private images with (admin).
    #[command(subcommand)]
    Registry(RegistryCommand),
    /// Apply a Compose file as a stack: each service a deployment STACK_SERVICE, created,
    /// updated (rolled out with its update_config) or left alone; --prune deletes those gone.
    Apply {
        #[command(flatten)]
        file: crate::stack_cli::FileArgs,
        /// Only show what would change.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        wait: WaitArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show what applying a Compose file would change, changing nothing.
    Diff {
        #[command(flatten)]
        file: crate::stack_cli::FileArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Manage stacks (groups of deployments applied from one Compose file).
    #[command(subcommand)]
    Stack(StackCommand),
    /// Show the audit log: who changed what, newest first (admin).
    Audit {
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show what happened in the cluster, oldest first; with --follow, keep printing new events
    /// as they happen (reconnecting, without gaps, if the server goes away).
    Events {
        /// Only events after this id.
        #[arg(long, default_value_t = 0)]
        since: u64,
        /// At most this many past events (1..=1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(short, long)]
        follow: bool,
        #[command(flatten)]
        filter: client::EventFilterArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print shell completions.
    Completions { shell: clap_complete::Shell },
}

#[derive(Subcommand)]
pub enum DeployCommand {
    /// Create a deployment: IMAGE with N replicas, optionally a COMMAND after `--`.
    Create {
        image: String,
        #[arg(long, short = 'r')]
        replicas: i64,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        units: Option<i64>,
        #[command(flatten)]
        workload: Box<WorkloadArgs>,
        #[command(flatten)]
        wait: WaitArgs,
        #[command(flatten)]
        client: ClientArgs,
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// List deployments.
    Ls(ClientArgs),
    /// Show one deployment and its replicas.
    Get {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Each replica with its state and why it does not serve, the replicas the deployment is
    /// short of (unplaced, crash-looping) with why, then those that ended badly, newest first,
    /// with why (exit code, OOM kill, the failed health check, the engine's refusal).
    Ps {
        name: String,
        /// Full container ids and reasons.
        #[arg(long)]
        no_trunc: bool,
        /// Only the current replicas, not those that ended.
        #[arg(long)]
        no_history: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Where the deployment's published ports are reached, as the engines report them.
    Endpoints {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Change the number of replicas.
    Scale {
        name: String,
        replicas: i64,
        #[command(flatten)]
        wait: WaitArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Change the template (a new revision, rolled out replica by replica), replicas or policy.
    Update {
        name: String,
        #[command(flatten)]
        args: Box<crate::rollout_cli::UpdateArgs>,
        #[command(flatten)]
        workload: Box<WorkloadArgs>,
        #[command(flatten)]
        wait: WaitArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Roll back to the previous revision, or to any kept one.
    Rollback {
        name: String,
        #[arg(long)]
        to_revision: Option<u64>,
        #[command(flatten)]
        wait: WaitArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The kept revisions: when, who, why, and what changed.
    History {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Pause or resume the rollout under way.
    #[command(subcommand)]
    Rollout(RolloutCommand),
    /// Move replicas, one at a time, to even out spread (e.g. onto a node that came back).
    Rebalance {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a deployment and its containers.
    Rm {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand)]
pub enum RolloutCommand {
    /// Stop replacing replicas until resumed.
    Pause {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    Resume {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Make a token (shown once; the server keeps only its digest).
    Create {
        #[arg(long, value_parser = ["admin", "reader"])]
        role: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand)]
pub enum StackCommand {
    /// List the stacks with their deployments.
    Ls(ClientArgs),
    /// A stack's deployments: image, running/required, revision.
    Ps {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete every deployment of the stack.
    Rm {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand)]
pub enum RegistryCommand {
    /// Keep a login for REGISTRY (host[:port]); the password is read from stdin.
    Add {
        registry: String,
        #[arg(short, long)]
        username: String,
        /// Read the password from stdin (the only way: never on the command line).
        #[arg(long, required = true)]
        password_stdin: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List the registries with their usernames (never a password).
    Ls(ClientArgs),
    /// Forget the login for REGISTRY.
    Rm {
        registry: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand)]
pub enum NodeCommand {
    /// List nodes.
    Ls(ClientArgs),
    /// Add a node: NAME and its engine ADDRESS (unix:///path, tcp://host:port).
    Add {
        name: String,
        address: String,
        #[arg(long, default_value_t = 100)]
        capacity: i64,
        /// A label, KEY=VALUE (repeatable).
        #[arg(short = 'l', long = "label", value_name = "KEY=VALUE")]
        labels: Vec<String>,
        /// Where its published ports are reached (default: the address's host).
        #[arg(long)]
        public_host: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Set labels (KEY=VALUE) or remove them (-KEY, or KEY-) on a node; nothing placed moves.
    Label {
        name: String,
        #[arg(required = true, value_name = "KEY=VALUE|-KEY")]
        changes: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Drain a node, then remove it.
    Rm {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Move a node's replicas elsewhere and keep new ones off it.
    Drain {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(args) => serve::run(*args).await,
        Command::Status(c) => client::status(&c).await,
        Command::Deploy(DeployCommand::Create { image, replicas, name, units, workload, wait, client: c, command }) => {
            let mut body = json!({ "image": image, "replicas": replicas, "command": command });
            if let Some(name) = name {
                body["name"] = json!(name);
            }
            if let Some(units) = units {
                body["units"] = json!(units);
            }
            workload.fill(&mut body)?;
            client::create(&c, body, &wait).await
        }
        Command::Logs(args) => crate::logs_cli::logs(&args).await,
        Command::Deploy(DeployCommand::Ps { name, no_trunc, no_history, client: c }) => {
            client::ps(&c, &name, no_trunc, !no_history).await
        }
        Command::Deploy(DeployCommand::Endpoints { name, client: c }) => client::endpoints(&c, &name).await,
        Command::Deploy(DeployCommand::Ls(c)) => client::deployments(&c).await,
        Command::Deploy(DeployCommand::Get { name, client: c }) => client::deployment(&c, &name).await,
        Command::Deploy(DeployCommand::Scale { name, replicas, wait, client: c }) => {
            client::scale(&c, &name, replicas, &wait).await
        }
        Command::Deploy(DeployCommand::Update { name, args, workload, wait, client: c }) => {
            rollout_cli::update(&c, &name, *args, *workload, &wait).await
        }
        Command::Deploy(DeployCommand::Rollback { name, to_revision, wait, client: c }) => {
            rollout_cli::rollback(&c, &name, to_revision, &wait).await
        }
        Command::Deploy(DeployCommand::History { name, client: c }) => rollout_cli::history(&c, &name).await,
        Command::Deploy(DeployCommand::Rollout(RolloutCommand::Pause { name, client: c })) => {
            rollout_cli::pause(&c, &name, true).await
        }
        Command::Deploy(DeployCommand::Rollout(RolloutCommand::Resume { name, client: c })) => {
            rollout_cli::pause(&c, &name, false).await
        }
        Command::Deploy(DeployCommand::Rm { name, client: c }) => client::delete(&c, &name).await,
        Command::Deploy(DeployCommand::Rebalance { name, client: c }) => client::rebalance(&c, &name).await,
        Command::Node(NodeCommand::Ls(c)) => client::nodes(&c).await,
        Command::Node(NodeCommand::Add { name, address, capacity, labels, public_host, client: c }) => {
            let mut body = json!({ "name": name, "address": address, "capacity": capacity });
            if !labels.is_empty() {
                body["labels"] = json!(crate::workload_args::pairs("--label", &labels)?);
            }
            if let Some(host) = public_host {
                body["public_host"] = json!(host);
            }
            client::add_node(&c, body).await
        }
        Command::Node(NodeCommand::Label { name, changes, client: c }) => client::label_node(&c, &name, &changes).await,
        Command::Node(NodeCommand::Rm { name, client: c }) => client::remove_node(&c, &name).await,
        Command::Node(NodeCommand::Drain { name, client: c }) => client::drain_node(&c, &name).await,
        Command::Token(TokenCommand::Create { role, client: c }) => client::create_token(&c, &role).await,
        Command::Registry(RegistryCommand::Add { registry, username, client: c, .. }) => {
            crate::registry_cli::add(&c, &registry, &username).await
        }
        Command::Registry(RegistryCommand::Ls(c)) => crate::registry_cli::list(&c).await,
        Command::Registry(RegistryCommand::Rm { registry, client: c }) => {
            crate::registry_cli::remove(&c, &registry).await
        }
        Command::Apply { file, dry_run, wait, client: c } => crate::stack_cli::apply(&c, &file, dry_run, &wait).await,
        Command::Diff { file, client: c } => {
            let no_wait = WaitArgs { wait: false, timeout: std::time::Duration::ZERO };
            crate::stack_cli::apply(&c, &file, true, &no_wait).await
        }
        Command::Stack(StackCommand::Ls(c)) => crate::stack_cli::list(&c).await,
        Command::Stack(StackCommand::Ps { name, client: c }) => crate::stack_cli::ps(&c, &name).await,
        Command::Stack(StackCommand::Rm { name, client: c }) => crate::stack_cli::remove(&c, &name).await,
        Command::Audit { limit, client: c } => client::audit(&c, limit).await,
        Command::Events { since, limit, follow, filter, client: c } => {
            client::events(&c, since, limit, follow, &filter).await
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "orchestrator", &mut std::io::stdout());
            Ok(())
        }
    }
}

/// The command line as clap should read it: in `node label`, a removal written `-KEY` (as
/// the issue and `docker node update --label-rm` users write it) would be read as an unknown
/// flag, so it becomes kubectl's `KEY-`, which means the same. Flags (`-o`, `--output`) stay.
pub fn with_label_removals_as_suffix(args: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut args: Vec<String> = args.into_iter().collect();
    let is_label = args.len() > 3 && args[1] == "node" && args[2] == "label";
    if is_label {
        for arg in &mut args[4..] {
            let removal = arg.len() > 2 && arg.starts_with('-') && !arg.starts_with("--") && !arg.contains('=');
            if removal {
                *arg = format!("{}-", &arg[1..]);
            }
        }
    }
    args
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// clap's own checks of every command (unique names, valid defaults), which it would
    /// otherwise run only when that command is parsed.
    #[test]
    fn every_command_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn node_label_takes_dash_key_removals_and_still_knows_its_flags() {
        let args =
            ["orchestrator", "node", "label", "n1", "zone=a", "-disk", "rack-", "--server", "http://h:1", "-o", "json"];
        let cli = Cli::try_parse_from(with_label_removals_as_suffix(args.map(String::from))).unwrap();
        let Command::Node(NodeCommand::Label { name, changes, client }) = cli.command else { panic!("not node label") };
        assert_eq!((name.as_str(), changes), ("n1", vec!["zone=a".to_string(), "disk-".into(), "rack-".into()]));
        assert!(client.output == crate::client::Output::Json, "the flags after the changes are still flags");
        // Elsewhere nothing is rewritten.
        let other = ["orchestrator", "node", "ls", "-x"].map(String::from);
        assert_eq!(with_label_removals_as_suffix(other.clone()), other);
    }
}
