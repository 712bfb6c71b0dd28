// Produces three records with kafkajs over SASL_SSL and SCRAM, one request each, and
// prints their offsets: BOOTSTRAP TOPIC MECHANISM USER PASSWORD CA_FILE.
const fs = require('fs');
const { Kafka, logLevel } = require('kafkajs');

const [bootstrap, topic, mechanism, username, password, caFile] = process.argv.slice(2);

(async () => {
  const kafka = new Kafka({
    clientId: 'yaks-test',
    brokers: [bootstrap],
    logLevel: logLevel.ERROR,
    ssl: { ca: [fs.readFileSync(caFile, 'utf-8')] },
    sasl: { mechanism: mechanism.toLowerCase(), username, password },
  });
  const producer = kafka.producer();
  await producer.connect();
  const offsets = [];
  for (let i = 0; i < 3; i++) {
    const [result] = await producer.send({
      topic,
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
