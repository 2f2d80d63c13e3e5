"""Live connectors: Bluesky Jetstream and Mastodon streaming into ``posts.raw`` (or a file).

``common`` holds what both share (settings, cursor file, backoff, sinks, metrics, the
per-event pipeline); ``bluesky`` and ``mastodon`` the transports. The mapping of frames to
canonical posts is pure and lives in ``models.firehose``. See docs/ingest.md.
"""
