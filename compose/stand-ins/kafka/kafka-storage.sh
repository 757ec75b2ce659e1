#!/usr/bin/env bash
# As Kafka's own script: the storage tool (format), on the jars of /opt/kafka/libs.
exec java ${KAFKA_HEAP_OPTS:--Xmx256m} -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties \
    -cp '/opt/kafka/libs/*' kafka.tools.StorageTool "$@"
