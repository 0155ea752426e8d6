"""`pleo-export serve`: a connector service (rules R19 to R21). Needs the `serve` extra for
webhooks (standardwebhooks)."""
