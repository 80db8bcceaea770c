"""The broker server: WebSocket sessions, protocol, execution reports, market data, client."""
