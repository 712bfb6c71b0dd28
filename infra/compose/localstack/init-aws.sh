#!/bin/bash
# LocalStack ready hook: the compactor's job queue and its dead-letter queue, which takes a
# job after 5 failed receives (what `compactor.max_receives` means on SQS).
set -euo pipefail
awslocal sqs create-queue --queue-name yaks-compaction-dlq >/dev/null
dlq_arn=$(awslocal sqs get-queue-attributes \
  --queue-url http://localhost:4566/000000000000/yaks-compaction-dlq \
  --attribute-names QueueArn --query Attributes.QueueArn --output text)
awslocal sqs create-queue --queue-name yaks-compaction \
  --attributes "{\"VisibilityTimeout\":\"300\",\"RedrivePolicy\":\"{\\\"deadLetterTargetArn\\\":\\\"${dlq_arn}\\\",\\\"maxReceiveCount\\\":\\\"5\\\"}\"}" >/dev/null
awslocal s3 mb s3://yaks >/dev/null 2>&1 || true
echo "yaks queues and bucket ready"
