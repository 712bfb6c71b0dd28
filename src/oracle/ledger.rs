//! The ledger: every acknowledgement of an oracle run, in SQLite under the data directory.
//!
//! Written as delivery reports arrive (in transactions of whatever arrived together) and read
//! back for the check, so the verdict rests on what was durably recorded, and a run can be
//! re-examined afterwards with `sqlite3 DIR/oracle.sqlite`. Runs share the file, keyed by
//! run id.

use std::path::Path;

use anyhow::Context;
use rusqlite::{Connection, params};

use super::check::Ack;
use super::records::RecordId;

/// An open ledger file.
pub struct Ledger {
    connection: Connection,
}

impl Ledger {
    /// Opens (creating if needed) `dir/oracle.sqlite`.
    pub fn open(dir: &Path) -> anyhow::Result<Ledger> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join("oracle.sqlite");
        let connection =
            Connection::open(&path).with_context(|| format!("opening {}", path.display()))?;
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL;
                 CREATE TABLE IF NOT EXISTS acks (
                     run       TEXT NOT NULL,
                     topic     TEXT NOT NULL,
                     partition INTEGER NOT NULL,
                     offset    INTEGER NOT NULL,
                     producer  INTEGER NOT NULL,
                     sequence  INTEGER NOT NULL,
                     hash      INTEGER NOT NULL
                 );
                 CREATE INDEX IF NOT EXISTS acks_by_run ON acks (run);",
            )
            .context("creating the ledger's tables")?;
        Ok(Ledger { connection })
    }

    /// Records acknowledgements of `run` in one transaction.
    pub fn record(&mut self, run: &str, acks: &[Ack]) -> anyhow::Result<()> {
        let tx = self.connection.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO acks (run, topic, partition, offset, producer, sequence, hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for ack in acks {
                insert.execute(params![
                    run,
                    ack.topic,
                    ack.partition,
                    ack.offset,
                    ack.id.producer,
                    ack.id.sequence as i64,
                    ack.hash
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Every acknowledgement of `run`.
    pub fn acks(&self, run: &str) -> anyhow::Result<Vec<Ack>> {
        let mut select = self.connection.prepare(
            "SELECT topic, partition, offset, producer, sequence, hash FROM acks WHERE run = ?1",
        )?;
        let rows = select.query_map(params![run], |row| {
            Ok(Ack {
                topic: row.get(0)?,
                partition: row.get(1)?,
                offset: row.get(2)?,
                id: RecordId {
                    producer: row.get(3)?,
                    sequence: row.get::<_, i64>(4)? as u64,
                },
                hash: row.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }
}
