"""The network edge: provider adapters that turn provider responses into canonical candles."""
