// Reads COUNT records of partition 0 from the beginning with kafkajs (a group member, as
// kafkajs consumers always are) and prints "offset key value" per record, value "null" for
// a tombstone: what a changelog reader sees of a compacted topic.
const { Kafka, logLevel } = require('kafkajs');

const [bootstrap, topic, countText] = process.argv.slice(2);
const count = Number(countText);

(async () => {
  const kafka = new Kafka({ clientId: 'yaks-test', brokers: [bootstrap], logLevel: logLevel.ERROR });
  const consumer = kafka.consumer({ groupId: `read-keys-${Date.now()}` });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const lines = [];
  const done = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`read ${lines.length} of ${count}`)), 30000);
    consumer.run({
      eachMessage: async ({ partition, message }) => {
        if (partition !== 0 || lines.length >= count) return;
        const value = message.value === null ? 'null' : message.value.toString();
        lines.push(`${message.offset} ${message.key.toString()} ${value}`);
        if (lines.length === count) {
          clearTimeout(timer);
          resolve();
        }
      },
    });
  });
  await done;
  await consumer.disconnect();
  console.log(lines.join('\n'));
})().catch((error) => {
  console.error(error);
  process.exit(1);
});
