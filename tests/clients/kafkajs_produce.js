// Produces ten records with kafkajs and prints their offsets.
const { Kafka, CompressionTypes, logLevel } = require('kafkajs');

const [bootstrap, topic] = process.argv.slice(2);

(async () => {
  const kafka = new Kafka({ clientId: 'yaks-test', brokers: [bootstrap], logLevel: logLevel.ERROR });
  // kafkajs's idempotent producer allows one request in flight.
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const offsets = [];
  // One record per request, so each answer carries that record's offset.
  for (let i = 0; i < 10; i++) {
    const [result] = await producer.send({
      topic,
      compression: CompressionTypes.GZIP,
      messages: [{ value: `kafkajs ${i}`, partition: 0 }],
    });
    offsets.push(result.baseOffset);
  }
  await producer.disconnect();
  console.log(offsets.join(' '));
})().catch((error) => {
  console.error(error);
  process.exit(1);
});
