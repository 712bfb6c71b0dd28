//! `yaks user create|list|delete`: SASL/SCRAM users, written straight to the metastore.
//!
//! Kafka's admin clients manage users through a gateway (AlterUserScramCredentials, as
//! `kafka-configs --entity-type users` and confluent-kafka's admin API do); this command
//! works without any user yet, which is how a cluster's first user is made. It needs the
//! settings' PostgreSQL URL, like `yaks migrate`. Passwords are read from a file or standard
//! input, never from the command line, where other users of the machine could see them.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Subcommand;
use yaks_common::config::Config;
use yaks_common::metastore::{Credentials, PgMetastore};
use yaks_common::scram::{Credential, MAX_ITERATIONS, MIN_ITERATIONS, Mechanism};

/// `yaks user …`.
#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Create a user, or set a user's password: a SCRAM-SHA-256 and a SCRAM-SHA-512
    /// credential, which PLAIN logins are checked against too.
    Create {
        /// User name.
        name: String,
        /// Read the password from this file (its first line); default: standard input.
        #[arg(long, value_name = "PATH")]
        password_file: Option<PathBuf>,
        /// PBKDF2 iterations (4096–16384).
        #[arg(long, default_value_t = 8192)]
        iterations: i32,
    },
    /// List users and their mechanisms.
    List,
    /// Delete a user's credentials.
    Delete {
        /// User name.
        name: String,
    },
}

/// The settings' PostgreSQL, migrated: where `yaks user` and `yaks acl` write.
pub async fn metastore(config: &Config) -> anyhow::Result<PgMetastore> {
    let store = PgMetastore::connect(&config.postgres).context("postgres settings")?;
    store
        .migrate()
        .await
        .context("applying migrations to postgres")?;
    Ok(store)
}

/// Runs a `yaks user` command.
pub async fn run(config: &Config, command: UserCommand) -> anyhow::Result<()> {
    let store = metastore(config).await?;
    match command {
        UserCommand::Create {
            name,
            password_file,
            iterations,
        } => {
            if name.is_empty() {
                bail!("a user name must not be empty");
            }
            if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
                bail!("--iterations must be between {MIN_ITERATIONS} and {MAX_ITERATIONS}");
            }
            let password = read_password(password_file)?;
            for credential in credentials(&password, iterations) {
                store.upsert_scram_credential(&name, &credential).await?;
            }
            println!("user {name}: SCRAM-SHA-256, SCRAM-SHA-512 ({iterations} iterations)");
        }
        UserCommand::List => {
            let mut current: Option<String> = None;
            let mut line = String::new();
            for (user, credential) in store.list_scram_credentials(None).await? {
                if current.as_deref() != Some(&user) {
                    if !line.is_empty() {
                        println!("{line}");
                    }
                    line = user.clone();
                    current = Some(user);
                }
                line.push_str(&format!(
                    "  {} ({} iterations)",
                    credential.mechanism.name(),
                    credential.iterations
                ));
            }
            if !line.is_empty() {
                println!("{line}");
            }
        }
        UserCommand::Delete { name } => {
            let mut deleted = false;
            for mechanism in Mechanism::ALL {
                deleted |= store.delete_scram_credential(&name, mechanism).await?;
            }
            if !deleted {
                bail!("no user {name}");
            }
            println!("user {name} deleted");
        }
    }
    Ok(())
}

/// A credential per mechanism for `password`, each with its own random salt.
pub fn credentials(password: &str, iterations: i32) -> Vec<Credential> {
    Mechanism::ALL
        .into_iter()
        .map(|mechanism| {
            let mut salt = Vec::with_capacity(32);
            salt.extend_from_slice(&yaks_common::random::u128().to_le_bytes());
            salt.extend_from_slice(&yaks_common::random::u128().to_le_bytes());
            Credential::from_password(mechanism, password, salt, iterations)
        })
        .collect()
}

fn read_password(file: Option<PathBuf>) -> anyhow::Result<String> {
    let mut text = String::new();
    match &file {
        Some(path) => {
            text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
        }
        None => {
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading the password from standard input")?;
        }
    }
    let password = text.lines().next().unwrap_or_default().to_owned();
    if password.is_empty() {
        bail!("the password is empty");
    }
    Ok(password)
}
