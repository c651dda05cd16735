"""The WebSocket side of the server: one session per connection, the registry of
open connections, limits and the broadcast backplane (docs/architecture.md)."""
