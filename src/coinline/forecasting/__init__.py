"""Forecasting: a trained run loaded as a model set that predicts on new candles through the very feature
code training used, the `forecasts` ledger, the scoreboard of matured forecasts, and shadow challengers."""
