-- The dead letter must take any message. Its unique key held the raw topic, and a
-- topic that does not compress (a device can publish one of up to 64 KB) made the index
-- refuse the row ("index row size ... exceeds btree version 4 maximum"), so the batch
-- could never commit. The key now holds a hash of the topic instead, and the processor
-- stores at most 2,048 characters of it (docs/delivery.md, "Poison messages").
drop index if exists ingest_rejects_message;
create unique index ingest_rejects_message on ingest_rejects (received_at, reason, md5(topic));
