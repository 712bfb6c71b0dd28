//! `yaks txn list|describe|abort`: transactional ids as the metastore holds them, and an
//! operator's abort of a transaction left hanging.
//!
//! Kafka's `kafka-transactions.sh` lists and describes through a broker and aborts a
//! hanging transaction by writing its markers to the partition leaders. Here the abort is
//! the coordinator's own: it writes the ABORT markers and ends the transaction in one
//! metastore transaction, fencing the producer, as a timeout does, so it needs the
//! settings' PostgreSQL, like `yaks user` (listing works through any gateway too:
//! `kafka-transactions.sh list`).

use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Subcommand;
use yaks_common::config::Config;
use yaks_common::metastore::transactions::{
    EndOutcome, EndReason, EndRequest, TxnError, TxnProducer, TxnRecord, TxnState,
};
use yaks_common::metastore::{Cluster, Topics, Transactions};
use yaks_gateway::GatewayStore;
use yaks_gateway::transactions::TxnCoordinator;

/// `yaks txn …`.
#[derive(Subcommand, Debug)]
pub enum TxnCommand {
    /// List transactional ids: producer, epoch, state, and how long the open transaction
    /// has run.
    List {
        /// Only ids in this state (Empty, Ongoing, CompleteCommit, CompleteAbort).
        #[arg(long)]
        state: Option<String>,
    },
    /// One transactional id in full: its open transaction's partitions and groups.
    Describe {
        /// The transactional id.
        transactional_id: String,
    },
    /// Abort the open transaction of a transactional id and fence its producer (whose next
    /// request gets PRODUCER_FENCED): for a producer that hangs and holds read_committed
    /// readers back at its transaction's first offset.
    Abort {
        /// The transactional id.
        transactional_id: String,
    },
}

/// Runs a `yaks txn` command.
pub async fn run(config: &Config, command: TxnCommand) -> anyhow::Result<()> {
    let store = Arc::new(crate::users::metastore(config).await?);
    let now_ms = store.server_time_ms().await?;
    match command {
        TxnCommand::List { state } => {
            let wanted = match state.as_deref() {
                None => None,
                Some(name) => match TxnState::from_name(name) {
                    Some(state) => Some(state),
                    None => bail!(
                        "unknown state {name:?}: Empty, Ongoing, CompleteCommit or CompleteAbort"
                    ),
                },
            };
            let records = store.list_transactions().await.map_err(txn_error)?;
            println!(
                "{:<32} {:>12} {:>6} {:<14} {:>10} {:>11} PARTITIONS",
                "TRANSACTIONAL ID", "PRODUCER ID", "EPOCH", "STATE", "TIMEOUT MS", "OPEN FOR MS"
            );
            for record in records
                .iter()
                .filter(|r| wanted.is_none_or(|s| r.state == s))
            {
                println!(
                    "{:<32} {:>12} {:>6} {:<14} {:>10} {:>11} {}",
                    record.transactional_id,
                    record.producer_id,
                    record.producer_epoch,
                    record.state.name(),
                    record.timeout_ms,
                    open_for(record, now_ms),
                    record.partitions.len()
                );
            }
        }
        TxnCommand::Describe { transactional_id } => {
            let record = known(store.as_ref(), &transactional_id).await?;
            let topics = store.topics(None).await?;
            println!("transactional id: {}", record.transactional_id);
            println!("producer id:      {}", record.producer_id);
            println!("producer epoch:   {}", record.producer_epoch);
            println!("state:            {}", record.state.name());
            println!("timeout ms:       {}", record.timeout_ms);
            println!("open for ms:      {}", open_for(&record, now_ms));
            println!("partitions:");
            for (topic_id, partition) in &record.partitions {
                let topic = topics
                    .iter()
                    .find(|t| t.topic_id == *topic_id)
                    .map_or("(deleted)", |t| t.name.as_str());
                println!("  {topic}-{partition}");
            }
            println!("groups:");
            for group in &record.groups {
                println!("  {group}");
            }
        }
        TxnCommand::Abort { transactional_id } => {
            let record = known(store.as_ref(), &transactional_id).await?;
            if record.state != TxnState::Ongoing {
                bail!(
                    "transactional id {transactional_id} has no open transaction (state {})",
                    record.state.name()
                );
            }
            let coordinator = TxnCoordinator::new(
                store.clone() as Arc<dyn GatewayStore>,
                config.s3.key_prefix.clone(),
            );
            let request = EndRequest {
                producer: TxnProducer {
                    transactional_id: &transactional_id,
                    producer_id: record.producer_id,
                    producer_epoch: record.producer_epoch,
                },
                commit: false,
                reason: EndReason::Operator,
                now_ms,
            };
            match coordinator.end(&request).await {
                Ok(EndOutcome::Ended) => {
                    println!(
                        "aborted the transaction of {transactional_id} over {} partitions; producer {} fenced at epoch {}",
                        record.partitions.len(),
                        record.producer_id,
                        record.producer_epoch
                    );
                }
                Ok(_) => println!("the transaction of {transactional_id} had already ended"),
                Err(TxnError::Fenced | TxnError::UnknownProducer) => bail!(
                    "transactional id {transactional_id} moved to another producer meanwhile; look again"
                ),
                Err(e) => return Err(txn_error(e)),
            }
        }
    }
    Ok(())
}

/// The record of `transactional_id`, or an error naming it.
async fn known(store: &dyn Transactions, transactional_id: &str) -> anyhow::Result<TxnRecord> {
    store
        .transaction(transactional_id)
        .await
        .map_err(txn_error)?
        .with_context(|| format!("no transactional id {transactional_id}"))
}

/// How long the open transaction has run, ms (0 when none is open).
fn open_for(record: &TxnRecord, now_ms: i64) -> i64 {
    if record.state != TxnState::Ongoing || record.start_ms < 0 {
        0
    } else {
        (now_ms - record.start_ms).max(0)
    }
}

fn txn_error(e: TxnError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}
