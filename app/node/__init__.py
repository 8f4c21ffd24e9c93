"""The node: one session's driver, browser and agent (`python -m app.node`)."""
