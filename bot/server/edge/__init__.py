"""The hardened edge: HTTP limits, browsers (Origin, Host), credentials, rate limits, admission, metrics, logs."""
