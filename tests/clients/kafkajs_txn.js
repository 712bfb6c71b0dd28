// Transactions as kafkajs runs them: one transactional producer commits A, aborts B and
// commits C over three partitions with the given codec (read_isolated.py reads them back).
const { Kafka, CompressionTypes, logLevel } = require('kafkajs');

const [bootstrap, topic, transactionalId, codec] = process.argv.slice(2);
const compression = {
  none: CompressionTypes.None,
  gzip: CompressionTypes.GZIP,
}[codec];

(async () => {
  const kafka = new Kafka({ clientId: 'yaks-test', brokers: [bootstrap], logLevel: logLevel.ERROR });
  const producer = kafka.producer({ transactionalId, idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  for (const [label, commit] of [['A', true], ['B', false], ['C', true]]) {
    const transaction = await producer.transaction();
    const messages = [];
    for (let i = 0; i < 30; i++) {
      messages.push({ key: `${i}`, value: `${label}-${i}`, partition: i % 3 });
    }
    await transaction.send({ topic, compression, messages });
    if (commit) {
      await transaction.commit();
    } else {
      await transaction.abort();
    }
  }
  await producer.disconnect();
})().catch((error) => {
  console.error(error);
  process.exit(1);
});
