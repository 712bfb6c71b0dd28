"""Transactions as aiokafka runs them: one transactional producer commits A, aborts B and
commits C over three partitions with the given codec (`read_isolated.py` then reads them
back).
"""

import asyncio
import sys

from aiokafka import AIOKafkaProducer

bootstrap, topic, transactional_id, codec = sys.argv[1:5]


async def main():
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        transactional_id=transactional_id,
        compression_type=None if codec == "none" else codec,
        linger_ms=5,
    )
    await producer.start()
    try:
        for label, commit in (("A", True), ("B", False), ("C", True)):
            await producer.begin_transaction()
            sent = [
                await producer.send(topic, value=f"{label}-{i}".encode(), key=str(i).encode(), partition=i % 3)
                for i in range(30)
            ]
            await asyncio.gather(*sent)
            if commit:
                await producer.commit_transaction()
            else:
                await producer.abort_transaction()
    finally:
        await producer.stop()


asyncio.run(main())
