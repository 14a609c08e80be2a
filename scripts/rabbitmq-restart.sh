#!/usr/bin/env bash
# Restart the RabbitMQ application in place (no reset: users, queues and
# messages survive), for tests that check reconnect behaviour.
set -euo pipefail
t0=$(date +%s%3N)
echo "==> rabbitmq-restart: stop_app"
timeout 60 rabbitmqctl stop_app >/dev/null
echo "==> rabbitmq-restart: start_app"
timeout 60 rabbitmqctl start_app >/dev/null
timeout 120 rabbitmqctl await_startup >/dev/null
echo "==> rabbitmq-restart: broker is back ($(($(date +%s%3N) - t0)) ms)"
