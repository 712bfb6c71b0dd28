// Consume-transform-produce as kafkajs runs it: a consumer group member reads `count`
// records of `input` and, batch by batch, writes them upper-cased to `output` and sends the
// consumed offsets in the same transaction. kafkajs speaks TxnOffsetCommit v0, which names
// no group member, while its own group is Stable.
const { Kafka, logLevel } = require('kafkajs');

const [bootstrap, input, output, groupId, transactionalId, count] = process.argv.slice(2);
const wanted = Number(count);

// kafkajs retries a failing batch for ever: a run that cannot finish fails instead.
const deadline = setTimeout(() => {
  console.error('not every record went through a transaction within 60 s');
  process.exit(1);
}, 60000);

(async () => {
  const kafka = new Kafka({ clientId: 'yaks-test', brokers: [bootstrap], logLevel: logLevel.ERROR });
  const producer = kafka.producer({ transactionalId, idempotent: true, maxInFlightRequests: 1 });
  const consumer = kafka.consumer({ groupId, readUncommitted: false });
  await producer.connect();
  await consumer.connect();
  await consumer.subscribe({ topics: [input], fromBeginning: true });
  let done = 0;
  let finish;
  const finished = new Promise((resolve) => { finish = resolve; });
  await consumer.run({
    autoCommit: false,
    eachBatch: async ({ batch }) => {
      if (batch.messages.length === 0) return;
      const transaction = await producer.transaction();
      try {
        await transaction.send({
          topic: output,
          messages: batch.messages.map((m) => ({ key: m.key, value: m.value.toString().toUpperCase() })),
        });
        const next = (BigInt(batch.lastOffset()) + 1n).toString();
        await transaction.sendOffsets({
          consumerGroupId: groupId,
          topics: [{ topic: batch.topic, partitions: [{ partition: batch.partition, offset: next }] }],
        });
        await transaction.commit();
      } catch (error) {
        await transaction.abort();
        throw error;
      }
      done += batch.messages.length;
      if (done >= wanted) finish();
    },
  });
  await finished;
  await consumer.disconnect();
  await producer.disconnect();
  clearTimeout(deadline);
})().catch((error) => {
  console.error(error);
  process.exit(1);
});
