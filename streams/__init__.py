"""I/O wiring of crowdwatch: settings, Faust app, Kafka, Redis, HTTP, CLI."""
