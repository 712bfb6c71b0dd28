//! The admin CLI: `yaks topic …`, `yaks produce`, `yaks consume`, `yaks group …`.
//!
//! Like Kafka's own tools (`kafka-topics`, `kafka-console-producer`,
//! `kafka-console-consumer`, `kafka-consumer-groups`), these talk the Kafka protocol to a
//! gateway through a real client (librdkafka), so they work against any yaks deployment a
//! client can reach, and they exercise the same paths users' applications do.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand, ValueEnum};
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, ConfigSource, NewPartitions, NewTopic,
    ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// How long a metadata or admin call may take.
const TIMEOUT: Duration = Duration::from_secs(15);

/// Where the admin commands connect.
#[derive(Args, Debug, Clone)]
pub struct Connection {
    /// A gateway's Kafka address (any one: the rest are discovered).
    #[arg(long, short = 'b', default_value = "localhost:9092", global = true)]
    pub brokers: String,
    /// A client setting, `key=value`, as kcat's `-X` (repeatable): `security.protocol=SASL_SSL`,
    /// `ssl.ca.location=ca.pem`, `sasl.mechanism=SCRAM-SHA-512`, `sasl.username=alice`…
    #[arg(short = 'X', value_name = "KEY=VALUE", global = true)]
    pub settings: Vec<String>,
    /// A file of client settings, one `key=value` per line (`#` comments), as Kafka tools'
    /// `--command-config`: the place for a password, which `-X` would show to other users
    /// of the machine.
    #[arg(long, value_name = "PATH", global = true)]
    pub command_config: Option<std::path::PathBuf>,
}

/// `yaks topic …`.
#[derive(Subcommand, Debug)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        /// Topic name.
        name: String,
        /// Partition count.
        #[arg(long, short = 'p', default_value_t = 1)]
        partitions: i32,
        /// A topic config, `key=value` (repeatable), e.g. `retention.ms=86400000`.
        #[arg(long = "config", short = 'c')]
        configs: Vec<String>,
    },
    /// List topics.
    List,
    /// Show a topic's partitions (log start and high watermark), its configs, and for a
    /// compacted topic where key compaction stands (dirty ratio per partition).
    Describe {
        /// Topic name.
        name: String,
        /// A gateway's operations address (`gateway.http_addr`), which reports key
        /// compaction; default: the `--brokers` host on port 9096.
        #[arg(long, value_name = "ADDR")]
        ops: Option<String>,
    },
    /// Delete a topic.
    Delete {
        /// Topic name.
        name: String,
    },
    /// Add partitions or change configs; configs not named keep their values.
    Alter {
        /// Topic name.
        name: String,
        /// New, larger partition count.
        #[arg(long, short = 'p')]
        partitions: Option<usize>,
        /// Set a config, `key=value` (repeatable).
        #[arg(long = "config", short = 'c')]
        configs: Vec<String>,
        /// Remove a config, returning it to its default (repeatable).
        #[arg(long = "delete-config")]
        delete_configs: Vec<String>,
    },
}

/// `yaks produce TOPIC`: one record per line of standard input.
#[derive(Args, Debug)]
pub struct ProduceArgs {
    /// Topic to produce to.
    pub topic: String,
    /// Split each line at the first occurrence of this into key and value (Kafka's
    /// `parse.key=true` with `key.separator`); lines without it get no key.
    #[arg(long)]
    pub key_separator: Option<String>,
    /// Send every record to this partition (default: by key, else spread).
    #[arg(long)]
    pub partition: Option<i32>,
    /// Compression: none, gzip, snappy, lz4, zstd.
    #[arg(long, default_value = "none")]
    pub compression: String,
}

/// Output format of `yaks consume`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The value only.
    Value,
    /// `key<separator>value`.
    KeyValue,
    /// One JSON object per record: topic, partition, offset, timestamp, key, value, headers.
    Json,
}

/// `yaks consume TOPIC`.
#[derive(Args, Debug)]
pub struct ConsumeArgs {
    /// Topic to read.
    pub topic: String,
    /// Read as a member of this consumer group (committing offsets), from its committed
    /// offsets; without it, read every partition standalone.
    #[arg(long, short = 'g')]
    pub group: Option<String>,
    /// Start at the log start (default without a group: the end, as Kafka's console
    /// consumer).
    #[arg(long)]
    pub from_beginning: bool,
    /// Start at this offset in every partition (standalone only).
    #[arg(long, conflicts_with = "group")]
    pub offset: Option<i64>,
    /// Read only this partition (standalone only).
    #[arg(long, conflicts_with = "group")]
    pub partition: Option<i32>,
    /// Stop after this many records.
    #[arg(long)]
    pub max_messages: Option<usize>,
    /// Stop when no record arrived for this long.
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    /// Output format.
    #[arg(long, value_enum, default_value = "value")]
    pub format: Format,
    /// Separator of `--format key-value`.
    #[arg(long, default_value = "\t")]
    pub key_separator: String,
}

/// `yaks group …`.
#[derive(Subcommand, Debug)]
pub enum GroupCommand {
    /// List consumer groups.
    List,
    /// Show a group's state, members and, per partition, committed offset, end and lag.
    Describe {
        /// Group id.
        group: String,
    },
    /// Move an inactive group's committed offsets (a dry run unless `--execute`).
    ResetOffsets {
        /// Group id.
        group: String,
        /// Topic whose offsets move (all its partitions).
        #[arg(long)]
        topic: String,
        /// To the log start.
        #[arg(long, group = "target")]
        to_earliest: bool,
        /// To the high watermark.
        #[arg(long, group = "target")]
        to_latest: bool,
        /// To this offset, clamped to each partition's log start and high watermark.
        #[arg(long, group = "target")]
        to_offset: Option<i64>,
        /// Commit the new offsets; without it, only print them.
        #[arg(long)]
        execute: bool,
    },
}

fn client_config(connection: &Connection) -> anyhow::Result<ClientConfig> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &connection.brokers)
        .set("client.id", "yaks-cli");
    let mut lines = Vec::new();
    if let Some(path) = &connection.command_config {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        lines.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_owned),
        );
    }
    lines.extend(connection.settings.iter().cloned());
    for line in lines {
        let Some((key, value)) = line.split_once('=') else {
            anyhow::bail!("client setting {line:?} is not key=value");
        };
        config.set(key.trim(), value.trim());
    }
    Ok(config)
}

fn admin(connection: &Connection) -> anyhow::Result<AdminClient<DefaultClientContext>> {
    client_config(connection)?
        .create()
        .context("creating the admin client")
}

fn consumer(connection: &Connection, group: Option<&str>) -> anyhow::Result<BaseConsumer> {
    let mut config = client_config(connection)?;
    config
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    // librdkafka needs a group id for committed-offset calls even when it never joins.
    config.set("group.id", group.unwrap_or("yaks-cli"));
    config.create().context("creating the consumer")
}

fn options() -> AdminOptions {
    AdminOptions::new().operation_timeout(Some(TIMEOUT))
}

/// `key=value` pairs from the command line.
fn parse_configs(configs: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    configs
        .iter()
        .map(|pair| {
            pair.split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .ok_or_else(|| anyhow!("config {pair:?} is not key=value"))
        })
        .collect()
}

/// One admin result, turned into an error naming what failed.
fn check<T>(
    results: Vec<Result<T, (String, rdkafka::types::RDKafkaErrorCode)>>,
) -> anyhow::Result<()> {
    for result in results {
        if let Err((what, code)) = result {
            bail!("{what}: {code}");
        }
    }
    Ok(())
}

/// Runs `yaks topic …`.
pub async fn topic(connection: &Connection, command: TopicCommand) -> anyhow::Result<()> {
    let admin = admin(connection)?;
    match command {
        TopicCommand::Create {
            name,
            partitions,
            configs,
        } => {
            let configs = parse_configs(&configs)?;
            let mut topic = NewTopic::new(&name, partitions, TopicReplication::Fixed(1));
            for (key, value) in &configs {
                topic = topic.set(key, value);
            }
            check(admin.create_topics([&topic], &options()).await?)?;
            println!("created topic {name} with {partitions} partitions");
        }
        TopicCommand::List => {
            let metadata = admin.inner().fetch_metadata(None, TIMEOUT)?;
            let mut names: Vec<&str> = metadata.topics().iter().map(|t| t.name()).collect();
            names.sort_unstable();
            for name in names {
                println!("{name}");
            }
        }
        TopicCommand::Describe { name, ops } => {
            if describe_topic(&admin, connection, &name).await? {
                let ops = ops.unwrap_or_else(|| default_ops_addr(&connection.brokers));
                describe_compaction(&ops, &name).await?;
            }
        }
        TopicCommand::Delete { name } => {
            check(admin.delete_topics(&[&name], &options()).await?)?;
            println!("deleted topic {name}");
        }
        TopicCommand::Alter {
            name,
            partitions,
            configs,
            delete_configs,
        } => {
            if partitions.is_none() && configs.is_empty() && delete_configs.is_empty() {
                bail!("nothing to alter: give --partitions, --config or --delete-config");
            }
            if let Some(count) = partitions {
                let request = NewPartitions::new(&name, count);
                check(admin.create_partitions([&request], &options()).await?)?;
                println!("topic {name} now has {count} partitions");
            }
            if !configs.is_empty() || !delete_configs.is_empty() {
                // AlterConfigs replaces a topic's whole config set: start from the
                // explicitly set configs, so those not named keep their values.
                let mut merged = explicit_configs(&admin, &name).await?;
                for (key, value) in parse_configs(&configs)? {
                    merged.insert(key, value);
                }
                for key in &delete_configs {
                    merged.remove(key);
                }
                let mut alter = AlterConfig::new(ResourceSpecifier::Topic(&name));
                for (key, value) in &merged {
                    alter = alter.set(key, value);
                }
                let results = admin.alter_configs([&alter], &options()).await?;
                for result in results {
                    if let Err((_, code)) = result {
                        bail!("altering configs of {name}: {code}");
                    }
                }
                println!("topic {name} configs updated");
            }
        }
    }
    Ok(())
}

/// The configs set on the topic itself (not defaults).
async fn explicit_configs(
    admin: &AdminClient<DefaultClientContext>,
    name: &str,
) -> anyhow::Result<BTreeMap<String, String>> {
    let described = admin
        .describe_configs([&ResourceSpecifier::Topic(name)], &options())
        .await?;
    let mut configs = BTreeMap::new();
    for resource in described {
        let resource = resource.map_err(|e| anyhow!("describing configs of {name}: {e}"))?;
        for entry in resource.entries {
            if entry.source == ConfigSource::DynamicTopic
                && let Some(value) = entry.value
            {
                configs.insert(entry.name, value);
            }
        }
    }
    Ok(configs)
}

/// Prints a topic's partitions and configs; whether `cleanup.policy` compacts it.
async fn describe_topic(
    admin: &AdminClient<DefaultClientContext>,
    connection: &Connection,
    name: &str,
) -> anyhow::Result<bool> {
    let metadata = admin.inner().fetch_metadata(Some(name), TIMEOUT)?;
    let Some(topic) = metadata.topics().iter().find(|t| t.name() == name) else {
        bail!("no topic {name}");
    };
    if let Some(error) = topic.error() {
        bail!("topic {name}: {}", RDKafkaErrorCode::from(error));
    }
    let consumer = consumer(connection, None)?;
    println!("topic {name}: {} partitions", topic.partitions().len());
    println!(
        "{:>9}  {:>6}  {:>12}  {:>14}",
        "partition", "leader", "log start", "high watermark"
    );
    let mut partitions: Vec<_> = topic.partitions().iter().collect();
    partitions.sort_by_key(|p| p.id());
    for partition in partitions {
        let (low, high) = consumer.fetch_watermarks(name, partition.id(), TIMEOUT)?;
        println!(
            "{:>9}  {:>6}  {:>12}  {:>14}",
            partition.id(),
            partition.leader(),
            low,
            high
        );
    }
    let described = admin
        .describe_configs([&ResourceSpecifier::Topic(name)], &options())
        .await?;
    println!("configs:");
    let mut compacted = false;
    for resource in described {
        let resource = resource.map_err(|e| anyhow!("describing configs: {e}"))?;
        let mut entries = resource.entries;
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        for entry in entries {
            if entry.name == "cleanup.policy" {
                let set = BTreeMap::from([(entry.name.clone(), entry.value.clone())]);
                compacted = yaks_common::topic_config::TopicConfigs::new(&set).compacts();
            }
            let origin = if entry.is_default { "default" } else { "set" };
            println!(
                "  {} = {} ({origin})",
                entry.name,
                entry.value.as_deref().unwrap_or("")
            );
        }
    }
    Ok(compacted)
}

/// Where a gateway's operations endpoints are when only its Kafka address is known: the
/// same host, on `gateway.http_addr`'s default port.
fn default_ops_addr(brokers: &str) -> String {
    let first = brokers.split(',').next().unwrap_or(brokers).trim();
    let host = first.rsplit_once(':').map_or(first, |(host, _)| host);
    format!("{host}:9096")
}

/// Prints where key compaction stands in each partition of compacted topic `name`, as the
/// gateway at `ops` reports it (the Kafka protocol has no field for it).
async fn describe_compaction(ops: &str, name: &str) -> anyhow::Result<()> {
    let client = yaks_common::rpc::RpcClient::new();
    let path = yaks_common::dirty::compaction_path(name);
    let answer = match client.get(&format!("http://{ops}"), &path).await {
        Ok(response) if response.status().is_success() => {
            yaks_common::rpc::read_body(response).await.ok()
        }
        _ => None,
    };
    let Some(body) = answer else {
        println!("key compaction: no answer from a gateway's operations endpoint at {ops} (--ops)");
        return Ok(());
    };
    let partitions: Vec<yaks_common::dirty::PartitionCompaction> =
        serde_json::from_slice(&body).context("reading the compaction status")?;
    println!("key compaction:");
    println!(
        "{:>9}  {:>15}  {:>11}  {:>12}  {:>12}",
        "partition", "cleaned through", "dirty ratio", "dirty bytes", "oldest dirty"
    );
    let now_ms = yaks_common::clock::system_clock().now_ms();
    for p in partitions {
        let oldest = p.oldest_dirty_ms.map_or("-".to_owned(), |ms| {
            format!("{:.0} s ago", (now_ms - ms).max(0) as f64 / 1000.0)
        });
        println!(
            "{:>9}  {:>15}  {:>11.3}  {:>12}  {:>12}",
            p.partition, p.cleaned_through, p.dirty_ratio, p.dirty_bytes, oldest
        );
    }
    Ok(())
}

/// Runs `yaks produce`: sends each line of standard input, waits for every
/// acknowledgement, exits with an error if any record failed.
pub async fn produce(connection: &Connection, args: ProduceArgs) -> anyhow::Result<()> {
    let producer: FutureProducer = client_config(connection)?
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("compression.type", &args.compression)
        .set("linger.ms", "5")
        .create()
        .context("creating the producer")?;
    let lines = tokio::task::spawn_blocking(|| {
        std::io::stdin()
            .lock()
            .lines()
            .collect::<Result<Vec<String>, _>>()
    })
    .await??;
    let mut deliveries = Vec::with_capacity(lines.len());
    for line in &lines {
        let (key, value) = match &args.key_separator {
            Some(separator) => match line.split_once(separator.as_str()) {
                Some((key, value)) => (Some(key), value),
                None => (None, line.as_str()),
            },
            None => (None, line.as_str()),
        };
        let mut record: FutureRecord<'_, str, str> = FutureRecord::to(&args.topic).payload(value);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(partition) = args.partition {
            record = record.partition(partition);
        }
        loop {
            match producer.send_result(record) {
                Ok(delivery) => {
                    deliveries.push(delivery);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    yaks_common::clock::sleep(Duration::from_millis(10)).await;
                }
                Err((e, _)) => bail!("producing to {}: {e}", args.topic),
            }
        }
    }
    let mut failed = 0;
    for delivery in deliveries {
        match delivery.await {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => {
                failed += 1;
                eprintln!("yaks: a record was not stored: {e}");
            }
            Err(_) => failed += 1,
        }
    }
    eprintln!(
        "produced {} records to {}",
        lines.len() - failed,
        args.topic
    );
    if failed > 0 {
        bail!("{failed} records were not stored");
    }
    Ok(())
}

/// Runs `yaks consume`.
pub async fn consume(connection: &Connection, args: ConsumeArgs) -> anyhow::Result<()> {
    let connection = connection.clone();
    tokio::task::spawn_blocking(move || consume_blocking(&connection, &args)).await?
}

fn consume_blocking(connection: &Connection, args: &ConsumeArgs) -> anyhow::Result<()> {
    let mut config = client_config(connection)?;
    config.set("enable.partition.eof", "false").set(
        "auto.offset.reset",
        if args.from_beginning {
            "earliest"
        } else {
            "latest"
        },
    );
    match &args.group {
        Some(group) => {
            config
                .set("group.id", group)
                .set("enable.auto.commit", "true");
        }
        None => {
            config
                .set("group.id", "yaks-cli")
                .set("enable.auto.commit", "false");
        }
    }
    let consumer: BaseConsumer = config.create().context("creating the consumer")?;
    if args.group.is_some() {
        consumer.subscribe(&[&args.topic])?;
    } else {
        let metadata = consumer.fetch_metadata(Some(&args.topic), TIMEOUT)?;
        let topic = metadata
            .topics()
            .iter()
            .find(|t| t.name() == args.topic)
            .filter(|t| t.error().is_none())
            .ok_or_else(|| anyhow!("no topic {}", args.topic))?;
        let start = match (args.offset, args.from_beginning) {
            (Some(offset), _) => Offset::Offset(offset),
            (None, true) => Offset::Beginning,
            (None, false) => Offset::End,
        };
        let mut assignment = TopicPartitionList::new();
        for partition in topic.partitions() {
            if args.partition.is_none_or(|p| p == partition.id()) {
                assignment.add_partition_offset(&args.topic, partition.id(), start)?;
            }
        }
        consumer.assign(&assignment)?;
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut count = 0;
    let mut last_record = yaks_common::clock::now();
    while args.max_messages.is_none_or(|max| count < max) {
        if let Some(timeout) = args.timeout_ms
            && last_record.elapsed() >= Duration::from_millis(timeout)
        {
            break;
        }
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = message.context("fetching")?;
        last_record = yaks_common::clock::now();
        count += 1;
        let value = String::from_utf8_lossy(message.payload().unwrap_or_default());
        match args.format {
            Format::Value => writeln!(out, "{value}")?,
            Format::KeyValue => {
                let key = String::from_utf8_lossy(message.key().unwrap_or_default());
                writeln!(out, "{key}{}{value}", args.key_separator)?;
            }
            Format::Json => {
                let mut headers = serde_json::Map::new();
                if let Some(list) = message.headers() {
                    for header in list.iter() {
                        let text = header
                            .value
                            .map(|v| String::from_utf8_lossy(v).into_owned());
                        headers.insert(header.key.to_owned(), text.into());
                    }
                }
                let record = serde_json::json!({
                    "topic": message.topic(),
                    "partition": message.partition(),
                    "offset": message.offset(),
                    "timestamp": message.timestamp().to_millis(),
                    "key": message.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                    "value": value,
                    "headers": headers,
                });
                writeln!(out, "{record}")?;
            }
        }
    }
    out.flush()?;
    if args.group.is_some() {
        // Commit what was printed before leaving, so the next run resumes after it.
        let _ = consumer.commit_consumer_state(CommitMode::Sync);
    }
    eprintln!("consumed {count} records");
    Ok(())
}

/// Runs `yaks group …`.
pub async fn group(connection: &Connection, command: GroupCommand) -> anyhow::Result<()> {
    let connection = connection.clone();
    tokio::task::spawn_blocking(move || group_blocking(&connection, command)).await?
}

fn group_blocking(connection: &Connection, command: GroupCommand) -> anyhow::Result<()> {
    match command {
        GroupCommand::List => {
            let consumer = consumer(connection, None)?;
            let list = consumer.fetch_group_list(None, TIMEOUT)?;
            let mut groups: Vec<_> = list.groups().iter().collect();
            groups.sort_by_key(|g| g.name().to_owned());
            for group in groups {
                println!("{}\t{}", group.name(), group.state());
            }
        }
        GroupCommand::Describe { group } => {
            let consumer = consumer(connection, Some(&group))?;
            let list = consumer.fetch_group_list(Some(&group), TIMEOUT)?;
            let info = list.groups().iter().find(|g| g.name() == group);
            match info {
                Some(info) => {
                    println!(
                        "group {group}: {} ({} members, protocol {})",
                        info.state(),
                        info.members().len(),
                        info.protocol()
                    );
                    for member in info.members() {
                        println!(
                            "  member {} client {} host {}",
                            member.id(),
                            member.client_id(),
                            member.client_host()
                        );
                    }
                }
                None => println!("group {group}: unknown"),
            }
            let offsets = committed(&consumer, &group)?;
            println!(
                "{:<24}  {:>9}  {:>10}  {:>14}  {:>8}",
                "topic", "partition", "committed", "high watermark", "lag"
            );
            for (topic, partition, offset) in offsets {
                let (_, high) = consumer.fetch_watermarks(&topic, partition, TIMEOUT)?;
                println!(
                    "{topic:<24}  {partition:>9}  {offset:>10}  {high:>14}  {:>8}",
                    (high - offset).max(0)
                );
            }
        }
        GroupCommand::ResetOffsets {
            group,
            topic,
            to_earliest,
            to_latest,
            to_offset,
            execute,
        } => {
            if !(to_earliest || to_latest || to_offset.is_some()) {
                bail!("say where to: --to-earliest, --to-latest or --to-offset N");
            }
            let consumer = consumer(connection, Some(&group))?;
            let list = consumer.fetch_group_list(Some(&group), TIMEOUT)?;
            if let Some(info) = list.groups().iter().find(|g| g.name() == group)
                && !info.members().is_empty()
            {
                bail!(
                    "group {group} has {} active members ({}); offsets can only be reset \
                     while the group is inactive",
                    info.members().len(),
                    info.state()
                );
            }
            let metadata = consumer.fetch_metadata(Some(&topic), TIMEOUT)?;
            let partitions = metadata
                .topics()
                .iter()
                .find(|t| t.name() == topic)
                .filter(|t| t.error().is_none())
                .map(|t| t.partitions().iter().map(|p| p.id()).collect::<Vec<_>>())
                .ok_or_else(|| anyhow!("no topic {topic}"))?;
            let mut list = TopicPartitionList::new();
            println!("{:<24}  {:>9}  {:>10}", "topic", "partition", "new offset");
            for partition in partitions {
                let (low, high) = consumer.fetch_watermarks(&topic, partition, TIMEOUT)?;
                let offset = match (to_earliest, to_latest, to_offset) {
                    (true, _, _) => low,
                    (_, true, _) => high,
                    (_, _, Some(offset)) => offset.clamp(low, high),
                    _ => unreachable!("checked above"),
                };
                println!("{topic:<24}  {partition:>9}  {offset:>10}");
                list.add_partition_offset(&topic, partition, Offset::Offset(offset))?;
            }
            if execute {
                consumer.commit(&list, CommitMode::Sync)?;
                println!("offsets of group {group} reset");
            } else {
                println!("dry run: add --execute to commit these offsets");
            }
        }
    }
    Ok(())
}

/// The group's committed offsets, per topic and partition, of every topic it committed to.
fn committed(consumer: &BaseConsumer, group: &str) -> anyhow::Result<Vec<(String, i32, i64)>> {
    let metadata = consumer.fetch_metadata(None, TIMEOUT)?;
    let mut wanted = TopicPartitionList::new();
    for topic in metadata.topics() {
        for partition in topic.partitions() {
            wanted.add_partition(topic.name(), partition.id());
        }
    }
    let committed = consumer
        .committed_offsets(wanted, TIMEOUT)
        .with_context(|| format!("reading the offsets of group {group}"))?;
    let mut offsets = Vec::new();
    for element in committed.elements() {
        if let Offset::Offset(offset) = element.offset() {
            offsets.push((element.topic().to_owned(), element.partition(), offset));
        }
    }
    offsets.sort();
    Ok(offsets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operations_address_defaults_to_the_first_broker_host() {
        assert_eq!(default_ops_addr("localhost:9092"), "localhost:9096");
        assert_eq!(
            default_ops_addr("10.0.0.7:19092,10.0.0.8:19092"),
            "10.0.0.7:9096"
        );
        assert_eq!(default_ops_addr("gateway"), "gateway:9096");
    }
}
